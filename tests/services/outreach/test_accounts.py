"""Accounts: hosted connection with a signed callback, status webhooks pausing and resuming campaigns,
one reconnect email per incident, refresh and delete."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.services.outreach.support import MakeSettings, Outreach, StartService, of_type, signed, start_outreach

MONDAY = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
OPEN = {"active_days": "every_day", "start_hour": 0, "end_hour": 24}


async def _status(o: Outreach, account: str, status: str) -> dict[str, Any]:
    return await o.api(
        "POST",
        "/v1/webhooks/accounts",
        200,
        **signed(o.settings, {"account_id": account, "status": status}),
    )


async def test_hosted_connection_completes_by_signed_callback(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY)
    pending = await o.api(
        "POST", "/v1/accounts", 202, json={"provider": "linkedin", "display_name": "Ada", "hosted": True}
    )
    assert pending["status"] == "pending" and pending["healthy"] is False
    notify = parse_qs(urlsplit(pending["auth_url"]).query)["notify_url"][0]
    assert notify.endswith("/v1/accounts/callback")
    account = pending["account_id"]
    # a pending account cannot run a campaign yet
    body = {"name": "c", "audience": {"type": "source_group", "ref": str(uuid.uuid4())}, "account_ids": [account]}
    cid = (await o.api("POST", "/v1/campaigns", 201, json=body))["campaign_id"]
    refused = await o.api("POST", f"/v1/campaigns/{cid}/launch", 409)
    assert refused["code"] == "no_active_account" and "pending" in refused["detail"]
    callback = {"status": "CREATION_SUCCESS", "account_id": "unipile-123", "name": account}
    bad = signed(o.settings, callback)
    bad["content"] = bad["content"].replace(b"unipile-123", b"unipile-666")
    assert (await o.client.post("/v1/accounts/callback", **bad)).status_code == 401
    done = await o.api("POST", "/v1/accounts/callback", 200, **signed(o.settings, callback))
    assert done == {"status": "connected", "account_id": account}
    assert (await o.api("GET", f"/v1/accounts/{account}", 200))["status"] == "connected"
    await o.api("POST", f"/v1/campaigns/{cid}/launch", 200)
    got = await o.events(lambda e: getattr(e.data, "account_id", None) == uuid.UUID(account))
    assert [type(e.data).__name__ for e in got][:2] == ["AccountConnectionRequested", "AccountConnected"]


async def test_reconnect_pauses_and_resumes_with_one_email_per_incident(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY)
    a, b = await o.account("a"), await o.account("b")
    only_a = {
        "name": "only a",
        "audience": {"type": "source_group", "ref": str(uuid.uuid4())},
        "delivery": OPEN,
        "account_ids": [a],
    }
    both = {**only_a, "name": "both", "account_ids": [a, b]}
    c1 = (await o.api("POST", "/v1/campaigns", 201, json=only_a))["campaign_id"]
    c2 = (await o.api("POST", "/v1/campaigns", 201, json=both))["campaign_id"]
    for c in (c1, c2):
        await o.api("POST", f"/v1/campaigns/{c}/launch", 200)

    assert (await _status(o, a, "CREDENTIALS"))["changed"] is True
    assert (await _status(o, a, "disconnected"))["changed"] is True  # same incident
    d1, d2 = await o.api("GET", f"/v1/campaigns/{c1}", 200), await o.api("GET", f"/v1/campaigns/{c2}", 200)
    assert d1["state"] == "paused" and d1["pause_reason"] == "account"
    assert d2["state"] == "running"  # b still sends
    assert {w["account_id"]: w["state"] for w in d2["workers"]} == {a: "paused_account", b: "active"}
    account = await o.api("GET", f"/v1/accounts/{a}", 200)
    assert account["healthy"] is False and len(account["reconnect_emails"]) == 1
    assert account["reconnect_emails"][0]["dry_run"] is True

    assert (await _status(o, a, "RECONNECTED"))["changed"] is True
    assert (await o.api("GET", f"/v1/campaigns/{c1}", 200))["state"] == "running"
    await _status(o, a, "sleeping")  # a new incident: a second email
    assert len((await o.api("GET", f"/v1/accounts/{a}", 200))["reconnect_emails"]) == 2
    unknown = await o.client.post("/v1/webhooks/accounts", **signed(o.settings, {"account_id": a, "status": "weird"}))
    assert unknown.status_code == 422

    o.ctx.linkedin.statuses[a] = "OK"  # type: ignore[attr-defined]
    refreshed = await o.api("POST", f"/v1/accounts/{a}/refresh", 200)
    assert refreshed["status"] == "ok" and refreshed["healthy"] is True

    await o.api("DELETE", f"/v1/accounts/{a}", 204)
    d1 = await o.api("GET", f"/v1/campaigns/{c1}", 200)
    assert d1["state"] == "needs_review" and "was deleted" in d1["message"]
    assert (await o.api("GET", f"/v1/campaigns/{c2}", 200))["state"] == "running"
    await o.api("GET", f"/v1/accounts/{a}", 404)

    got = await o.events()
    statuses = [
        (e.data.previous, e.data.status, e.data.healthy)
        for e in of_type(got, "AccountStatusChanged")
        if e.data.account_id == uuid.UUID(a)
    ]
    assert statuses == [
        ("connected", "credentials", False),
        ("credentials", "disconnected", False),
        ("disconnected", "reconnected", True),
        ("reconnected", "sleeping", False),
        ("sleeping", "ok", True),
    ]
    c1_events = [
        type(e.data).__name__
        for e in got
        if getattr(e.data, "campaign_id", None) == uuid.UUID(c1)
        and type(e.data).__name__.startswith("Campaign")
        and type(e.data).__name__ != "CampaignAudienceRunRequested"  # not a state change
    ]
    assert c1_events == [
        "CampaignCreated",
        "CampaignLaunched",
        "CampaignPaused",
        "CampaignResumed",
        "CampaignPaused",
        "CampaignResumed",
        "CampaignNeedsReview",
    ]
    assert [e.data.reason for e in of_type(got, "CampaignPaused")] == ["account_reconnect_required"] * 2
    assert len(of_type(got, "AccountDeleted")) == 1


async def test_an_account_webhook_field_of_the_wrong_type_or_length_is_a_422_naming_it(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    """The account-status webhook and the connection callback read their bodies by hand, turning whatever came
    into a string: a list as the account id was a 404 (a provider retries it for ever), an object as the provider's
    account id was stored as its text. Each is now a 422 that names the field, and nothing changes."""
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY)
    a = await o.account("a")
    pending = await o.api(
        "POST", "/v1/accounts", 202, json={"provider": "linkedin", "display_name": "Ada", "hosted": True}
    )
    b = pending["account_id"]
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("/v1/webhooks/accounts", {"account_id": [a], "status": "CREDENTIALS"}, "account_id"),
        ("/v1/webhooks/accounts", {"account_id": "a" * 201, "status": "CREDENTIALS"}, "account_id"),
        ("/v1/webhooks/accounts", {"account_id": a, "status": "CREDENTIALS" * 10}, "status"),
        ("/v1/webhooks/accounts", {"AccountStatus": {"account_id": {"id": a}, "message": "CREDENTIALS"}}, ""),
        ("/v1/webhooks/accounts", {"AccountStatus": "CREDENTIALS", "account_id": a}, "AccountStatus"),
        ("/v1/accounts/callback", {"status": "CREATION_SUCCESS", "name": [b]}, "name"),
        ("/v1/accounts/callback", {"status": "CREATION_SUCCESS", "name": b, "account_id": {"id": 1}}, "account_id"),
        ("/v1/accounts/callback", {"status": "CREATION_SUCCESS", "account_ref": "r" * 201}, "account_ref"),
        ("/v1/accounts/callback", {"status": True, "name": b}, "status"),
        ("/v1/accounts/callback", {"status": "failed", "name": b, "detail": 7}, "detail"),
    ]
    for path, hook, field in cases:
        r = await o.client.post(path, **signed(o.settings, hook))
        assert r.status_code == 422, (path, hook, r.status_code, r.text[:300])
        fields = [e["field"] for e in r.json()["errors"]]
        assert fields[:1] == [field or "AccountStatus.account_id"], (path, hook, r.text[:300])
    assert (await o.api("GET", f"/v1/accounts/{a}", 200))["status"] == "connected"
    assert (await o.api("GET", f"/v1/accounts/{b}", 200))["status"] == "pending"
    # What a provider sends is still read, its own extra fields ignored.
    nested = {"AccountStatus": {"account_id": a, "message": "CREDENTIALS", "account_type": "LINKEDIN"}}
    assert (await o.api("POST", "/v1/webhooks/accounts", 200, **signed(o.settings, nested)))["changed"] is True
    callback = {"status": "CREATION_SUCCESS", "account_id": "unipile-9", "name": b, "extra": [1]}
    done = await o.api("POST", "/v1/accounts/callback", 200, **signed(o.settings, callback))
    assert done == {"status": "connected", "account_id": b}
