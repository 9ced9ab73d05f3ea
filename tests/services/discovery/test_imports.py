"""CSV import and manual add on the real broker and database: exact counts, row numbers, dedupe."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select

from services.discovery.store import leads
from tests.services.discovery.conftest import StartDiscovery
from tests.services.discovery.support import client_for, envelopes, read_events, settled

CSV = """\ufeffLinkedIn URL,Email,First Name,Last Name,Company,Job Title,Notes
https://www.linkedin.com/in/ada-adler,ada@northwind.io,Ada,Adler,Northwind,Head of Sales,met at SaaStr
linkedin.com/in/ben-brandt/,,Ben,Brandt,Bluepeak,CTO,
,chloe@cobalt.io,Chloe,Costa,Cobalt,VP Marketing,

https://example.com/in/diego,not-an-email,Diego,Dubois,Dataforge,COO,
HTTPS://WWW.LINKEDIN.COM/in/Ada-Adler/?trk=x,,Ada,Adler,Northwind,Head of Sales,same person as line 2
,,Emma,Eriksen,Evergreen,CFO,
https://de.linkedin.com/in/farid-fischer,FARID@fluxio.io,Farid,Fischer,Fluxio,RevOps Lead,
,Chloe@Cobalt.io,Chloe,Costa,Cobalt,VP Marketing,email repeated
https://www.linkedin.com/in/grace-garcia,,Grace,Garcia,"Granite, Cloud",Head of Growth,"multi
line note"
https://www.linkedin.com/in/hugo-hansen,,Hugo,Hansen,Helio,CTO,,extra,fields
https://www.linkedin.com/in/known-person,,Known,Person,Ironclad,CEO,
"""


async def test_csv_import_counts_good_bad_and_duplicate_rows(start_discovery: StartDiscovery) -> None:
    service = await start_discovery(csv_batch_rows=3)
    ws = f"ws-{uuid.uuid4().hex[:8]}"
    async with await client_for(service, ws) as client:
        known = await client.post(
            "/v1/leads", json={"linkedin_url": "https://www.linkedin.com/in/known-person/", "full_name": "Known Person"}
        )
        assert known.status_code == 201
        r = await client.post(
            "/v1/imports/csv", files={"file": ("leads.csv", CSV.encode(), "text/csv")}, data={"name": "Conference list"}
        )
        assert r.status_code == 201, r.text
        report = r.json()
        assert (report["rows"], report["imported"], report["rejected"], report["duplicates"]) == (11, 5, 3, 3)
        assert report["errors"] == [
            {
                "row": 6,
                "column": "LinkedIn URL",
                "message": "'https://example.com/in/diego' must be a linkedin.com URL, not 'example.com'",
            },
            {"row": 6, "column": "Email", "message": "'not-an-email' is not a valid email address"},
            {"row": 8, "column": "LinkedIn URL", "message": "a row needs a LinkedIn URL or an email; both are empty"},
            {"row": 13, "column": "*", "message": "row has 9 fields but the header has 7"},
        ]
        assert [(d["row"], d["reason"]) for d in report["duplicate_rows"]] == [
            (7, "repeated in this file"),
            (10, "repeated in this file"),
            (14, "already in this workspace"),
        ]
        assert report["ignored_columns"] == ["Notes"]
        assert report["duplicate_rows"][2]["lead_id"] == known.json()["lead_id"]

        group = report["source_group_id"]
        members = (await client.get(f"/v1/source-groups/{group}/leads")).json()["items"]
        assert len(members) == 6  # five new leads and the one the workspace already knew
        by_name = {m["full_name"]: m for m in members}
        assert by_name["Ada Adler"]["email"] == "ada@northwind.io"
        assert by_name["Farid Fischer"]["linkedin_url"] == "https://www.linkedin.com/in/farid-fischer"
        assert by_name["Farid Fischer"]["email"] == "farid@fluxio.io"
        assert by_name["Grace Garcia"]["company"] == "Granite, Cloud"
        assert by_name["Known Person"]["new"] is False

        search = (await client.get(f"/v1/searches/{report['import_id']}")).json()
        assert (search["kind"], search["status"], search["new_leads"], search["duplicates"]) == (
            "csv",
            "finished",
            5,
            3,
        )
        records = await read_events(service, settled(ws, finished=1, discovered=6))
        discovered = envelopes(records, ws, "lead.discovered.v1")
        from_csv = [e for e in discovered if e.data.source == "csv"]
        assert len(from_csv) == 5 and len(discovered) == 6
        assert all(
            str(e.data.source_group_id) == group and str(e.data.search_id) == report["import_id"] for e in from_csv
        )
        [finished] = envelopes(records, ws, "search.finished.v1")
        assert (finished.data.reason, finished.data.total_new) == ("exhausted", 5)

        # The same file again: nothing new, every good row a duplicate.
        again = (await client.post("/v1/imports/csv", files={"file": ("leads.csv", CSV.encode(), "text/csv")})).json()
        assert (again["imported"], again["rejected"], again["duplicates"]) == (0, 3, 8)
    async with service.engine.connect() as conn:
        count = await conn.scalar(select(func.count()).select_from(leads).where(leads.c.workspace_id == ws))
    assert count == 6


async def test_csv_files_that_cannot_be_imported_are_422(start_discovery: StartDiscovery) -> None:
    service = await start_discovery()
    async with await client_for(service, "ws-bad-csv") as client:

        async def upload(content: bytes) -> tuple[int, str]:
            r = await client.post("/v1/imports/csv", files={"file": ("x.csv", content, "text/csv")})
            return r.status_code, r.json().get("detail", "")

        assert await upload(b"") == (422, "file: is empty; expected a header row then one lead per row")
        status, detail = await upload(b"name,company\nAda,Northwind\n")
        assert status == 422 and "neither a LinkedIn URL column" in detail
        status, detail = await upload("em\xe9il,name\nada@x.io,Ada\n".encode("latin-1"))
        assert (status, detail) == (422, "file: is not UTF-8 text")
        missing = await client.post("/v1/imports/csv", data={"name": "no file"})
        assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "file"
        # A line that is not UTF-8 spoils only its own row.
        content = "email,name\nren\xe9@x.io,Ren\xe9\nada@x.io,Ada\n".encode("latin-1")
        body = (await client.post("/v1/imports/csv", files={"file": ("x.csv", content, "text/csv")})).json()
        assert (body["rows"], body["imported"], body["rejected"]) == (2, 1, 1)
        assert body["errors"] == [{"row": 2, "column": "*", "message": "is not UTF-8 text; save the file as UTF-8"}]
        header_only = (await client.post("/v1/imports/csv", files={"file": ("x.csv", b"email\n", "text/csv")})).json()
        assert (header_only["rows"], header_only["imported"]) == (0, 0)
        # A NUL in a cell rejects that row; a cell past the csv module's field limit stops the reader.
        nul = (
            await client.post("/v1/imports/csv", files={"file": ("x.csv", b"email,name\nn@x.io,N\x00N\n", "text/csv")})
        ).json()
        assert nul["errors"] == [{"row": 2, "column": "name", "message": "contains a NUL character"}]
        huge = b'email,name\nok@x.io,Ok\nbig@x.io,"' + b"x" * 1_100_000 + b'"\nlater@x.io,L\n'
        body = (await client.post("/v1/imports/csv", files={"file": ("x.csv", huge, "text/csv")})).json()
        assert (body["rows"], body["imported"], body["rejected"]) == (2, 1, 1)
        assert body["errors"][0]["column"] == "*" and "field larger than field limit" in body["errors"][0]["message"]


async def test_manual_add_dedupes_and_validates(start_discovery: StartDiscovery) -> None:
    service = await start_discovery()
    ws = f"ws-{uuid.uuid4().hex[:8]}"
    async with await client_for(service, ws) as client:
        first = await client.post(
            "/v1/leads",
            json={
                "linkedin_url": "https://uk.linkedin.com/in/Ines-Ito/?x=1",
                "full_name": "Ines Ito",
                "company": "Juniper",
            },
        )
        assert first.status_code == 201 and first.json()["created"] is True
        lead_id = first.json()["lead_id"]
        same = await client.post(
            "/v1/leads", json={"linkedin_url": "linkedin.com/in/ines-ito", "email": "ines@juniper.io"}
        )
        assert same.status_code == 200 and same.json() == {**first.json(), "created": False, "duplicate": True}
        by_mail = await client.post("/v1/leads", json={"email": "Jonas@Kelp.io", "first_name": "Jonas"})
        assert by_mail.status_code == 201
        lead = (await client.get(f"/v1/leads/{by_mail.json()['lead_id']}")).json()
        assert (lead["email"], lead["full_name"], lead["source"]) == ("jonas@kelp.io", "Jonas", "manual")

        invalid = [
            ({"full_name": "Nobody"}, "linkedin_url"),
            ({"linkedin_url": "https://x.com/in/a"}, "linkedin_url"),
            ({"email": "nope"}, "email"),
            ({"email": "a@b.io", "company": "Nul\x00Corp"}, "company"),
        ]
        for body, field in invalid:
            r = await client.post("/v1/leads", json=body)
            assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, r.text
        assert (
            await client.post("/v1/leads", json={"email": "a@b.io", "source_group_id": str(uuid.uuid4())})
        ).status_code == 404

        records = await read_events(service, settled(ws, finished=0, discovered=2))
        discovered = envelopes(records, ws, "lead.discovered.v1")
        assert sorted(str(e.data.lead_id) for e in discovered) == sorted([lead_id, by_mail.json()["lead_id"]])
        assert {e.data.source for e in discovered} == {"manual"}
        groups = (await client.get("/v1/source-groups")).json()["items"]
        assert [(g["name"], g["size"], g["new_leads"]) for g in groups] == [("Manual", 2, 2)]


async def test_csv_uploads_are_capped_in_bytes_and_never_spooled(
    start_discovery: StartDiscovery, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Uploads are parsed as they arrive: no temporary file at any size (Starlette's UploadFile spools to /tmp
    # beyond 1 MiB; the chart's /tmp is a small emptyDir), and the byte cap holds while the body streams in.
    spooled: list[object] = []
    real = tempfile.TemporaryFile

    def recording(*args: Any, **kwargs: Any) -> Any:
        spooled.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", recording)
    cap = 2 * 1024 * 1024
    service = await start_discovery(csv_max_bytes=cap)
    notes = b"n" * 10_000  # an ignored column: big rows, few of them

    def csv_rows(prefix: str, n: int) -> bytes:
        return b"".join(b"%s%04d@x.io,Row %04d,%s\n" % (prefix.encode(), i, i, notes) for i in range(n))

    async with await client_for(service, f"ws-{uuid.uuid4().hex[:8]}") as client:
        first = b"email,name,notes\n" + csv_rows("a", 150)  # 1.5 MB
        ok = await client.post(
            "/v1/imports/csv", data={"name": "streamed"}, files={"file": ("big.csv", first, "text/csv")}
        )
        assert ok.status_code == 201, ok.text
        assert (ok.json()["rows"], ok.json()["imported"], ok.json()["ignored_columns"]) == (150, 150, ["notes"])
        assert spooled == []
        groups = (await client.get("/v1/source-groups")).json()["items"]
        assert groups[0]["name"] == "streamed"

        # Declared larger than the cap: refused before anything is read or imported.
        too_big = b"email,name,notes\n" + csv_rows("b", 300)  # 3 MB
        declared = await client.post("/v1/imports/csv", files={"file": ("x.csv", too_big, "text/csv")})
        assert declared.status_code == 413 and declared.json()["code"] == "payload_too_large"
        assert len((await client.get("/v1/source-groups")).json()["items"]) == 1

        # Streamed without a length: imported up to the cap, and the answer says where it stopped.
        async def chunks() -> AsyncIterator[bytes]:
            yield b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="s.csv"\r\n\r\n'
            for i in range(0, len(too_big), 64 * 1024):
                yield too_big[i : i + 64 * 1024]
            yield b"\r\n--b0undary--\r\n"

        streamed = await client.post(
            "/v1/imports/csv", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b0undary"}
        )
        assert streamed.status_code == 201, streamed.text
        body = streamed.json()
        assert 150 < body["imported"] < 300 and body["imported"] == body["rows"] - body["rejected"]
        assert body["errors"][-1]["message"].endswith(f"larger than {cap:,} bytes; later rows were not read")
        assert spooled == []

        not_multipart = await client.post("/v1/imports/csv", content=b"email\n", headers={"content-type": "text/csv"})
        assert not_multipart.status_code == 422 and not_multipart.json()["errors"][0]["field"] == "file"
        long_name = await client.post(
            "/v1/imports/csv", data={"name": "n" * 201}, files={"file": ("x.csv", b"email\n", "text/csv")}
        )
        assert long_name.status_code == 422 and long_name.json()["errors"][0]["field"] == "name"


async def test_a_csv_upload_has_its_own_byte_cap_above_the_json_one(start_discovery: StartDiscovery) -> None:
    """Request bodies are capped at http_max_body_bytes; the CSV upload at csv_max_bytes, counted as it streams."""
    service = await start_discovery(http_max_body_bytes=16_384, csv_max_bytes=262_144)
    ws = f"ws-{uuid.uuid4().hex[:8]}"
    # Few rows (they are published to the session's shared lead topic), made large by a column not imported.
    header = "LinkedIn URL,First Name,Last Name,Notes\n"
    rows = "".join(
        f"https://www.linkedin.com/in/cap-{uuid.uuid4().hex},Cap,Person{i},{'n' * 1000}\n" for i in range(20)
    )
    assert 16_384 < len(header + rows) < 262_144
    async with await client_for(service, ws) as client:
        fits = await client.post("/v1/imports/csv", files={"file": ("big.csv", (header + rows).encode(), "text/csv")})
        huge = header + "https://www.linkedin.com/in/cap-huge,Cap,Huge," + "n" * 300_000 + "\n"
        too_big = await client.post("/v1/imports/csv", files={"file": ("huge.csv", huge.encode(), "text/csv")})
        json_body = await client.post(
            "/v1/leads", json={"linkedin_url": "https://www.linkedin.com/in/x", "full_name": "x" * 20_000}
        )
    assert fits.status_code == 201, fits.text
    assert fits.json()["imported"] == 20
    assert too_big.status_code == 413 and too_big.json()["code"] == "payload_too_large"
    assert "262,144 bytes" in too_big.json()["detail"]
    assert json_body.status_code == 413 and "16,384 bytes" in json_body.json()["detail"]
