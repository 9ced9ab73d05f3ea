"""CSV import: streams an uploaded file row by row, imports the good rows, reports the bad and duplicate ones.

The file is read as the client sends it (``services.runtime.uploads``): nothing is spooled to disk, and a file
over ``LEADSTREAM_CSV_MAX_BYTES`` stops at that byte like a file with more than ``LEADSTREAM_CSV_MAX_ROWS`` rows
stops at that row: what came before is imported, and the answer says where it stopped.

An import is recorded like a search of kind ``csv`` (``SearchStarted`` ... ``SearchFinished``) whose
source group holds every row's lead. Rows are validated completely before anything is written, and
good rows are committed in batches, so a row is never half-imported. Row numbers are the file's line
numbers, the header being line 1, as a spreadsheet or editor shows them.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any
from uuid import UUID

from leadstream_schemas import Envelope, Event, LeadSource, SearchFinished, SearchPageCompleted, SearchStarted
from sqlalchemy import update

from services.runtime.errors import Problem
from services.runtime.service import Service
from services.runtime.uploads import UploadError, UploadTooLarge

from . import domain
from .handlers import lead_events, search_envelope
from .settings import DiscoverySettings
from .store import add_lead, searches, source_groups

# A single cell larger than this is a broken file, not a lead.
csv.field_size_limit(1_000_000)


@dataclass
class ImportReport:
    """What happened to each row of the file: exact counts, and the rows that were not imported."""

    import_id: UUID
    source_group_id: UUID
    rows: int = 0
    imported: int = 0
    rejected: int = 0
    duplicates: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    duplicate_rows: list[dict[str, Any]] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    errors_truncated: bool = False
    truncated_at_row: int | None = None


# (line the record starts on, values by header name (extra values under None), had undecodable bytes)
Record = tuple[int, dict[str | None, Any], bool]


class _Rows:
    """``csv.reader`` over the upload, line by line, with the line each record starts on.

    Lines are decoded one at a time, so a line that is not UTF-8 spoils only its own record.
    """

    def __init__(self, binary: IO[bytes]) -> None:
        self.binary = binary
        self.bad_lines: set[int] = set()
        self.reader = csv.reader(self._lines())
        self.header: list[str] = []

    def _lines(self) -> Iterator[str]:
        for number, raw in enumerate(self.binary, start=1):
            if number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                self.bad_lines.add(number)
                yield raw.decode("utf-8", "replace")

    def read_header(self) -> list[str]:
        """The first non-blank row, trimmed (empty when the file has none)."""
        for values in self.reader:
            if values and any(v.strip() for v in values):
                if self.bad_lines:
                    raise UnicodeDecodeError("utf-8", b"", 0, 1, "header is not UTF-8")
                self.header = [v.strip() for v in values]
                return self.header
        return []

    def records(self) -> Iterator[Record]:
        """The data records after the header, blank lines skipped."""
        while True:
            start = self.reader.line_num + 1
            try:
                values = next(self.reader)
            except StopIteration:
                return
            if not values or not any(v.strip() for v in values):
                continue
            width = len(self.header)
            record: dict[str | None, Any] = dict(zip(self.header, values[:width], strict=False))
            if len(values) > width:
                record[None] = values[width:]
            bad = any(start <= n <= self.reader.line_num for n in self.bad_lines)
            yield start, record, bad


def _take(records: Iterator[Record], n: int) -> tuple[list[Record], str | None]:
    """Up to ``n`` records, and why reading stopped early (a file that is not CSV), if it did."""
    out: list[Record] = []
    try:
        for record in records:
            out.append(record)
            if len(out) >= n:
                break
    except csv.Error as exc:
        return out, f"is not valid CSV ({exc})"
    except UploadError as exc:
        return out, str(exc)
    return out, None


class CsvImporter:
    """Runs one import (make one per upload)."""

    def __init__(
        self, service: Service, settings: DiscoverySettings, enrichment: domain.EnrichmentMode = "automatic"
    ) -> None:
        self.service = service
        self.settings = settings
        self.enrichment = enrichment  # the new source group's setting
        self._started_id = uuid.uuid4()

    async def run(self, workspace_id: str, file: IO[bytes], *, name: str) -> ImportReport:
        """Import ``file``; a header that cannot be imported is a 422 naming the problem."""
        rows = _Rows(file)
        try:
            header_values = await asyncio.to_thread(rows.read_header)
        except UploadTooLarge as exc:  # before the header row ended: nothing imported, the edge's 413
            raise exc.cause from None
        except UploadError as exc:
            raise Problem(422, "invalid_file", f"file: {exc}", field="file") from None
        except UnicodeDecodeError:
            raise Problem(422, "invalid_file", "file: is not UTF-8 text", field="file") from None
        except csv.Error as exc:
            raise Problem(422, "invalid_file", f"file: is not valid CSV ({exc})", field="file") from None
        if not header_values:
            raise Problem(
                422, "invalid_file", "file: is empty; expected a header row then one lead per row", field="file"
            )
        try:
            header = domain.map_header(header_values)
        except domain.HeaderError as exc:
            raise Problem(422, "invalid_header", f"file: {exc}", field="file") from None
        report = await self._start(workspace_id, name)
        report.ignored_columns = header.ignored
        records = rows.records()
        size = self.settings.csv_batch_rows
        while True:
            batch, broken = await asyncio.to_thread(_take, records, size)
            room = self.settings.csv_max_rows - report.rows
            overflow = len(batch) > room
            batch = batch[:room]
            if batch:
                await self._batch(workspace_id, report, header, len(header_values), batch)
            if overflow:
                report.truncated_at_row = batch[-1][0] if batch else None
                self._error(
                    report,
                    domain.RowError(
                        rows.reader.line_num,
                        "*",
                        f"the file has more than {self.settings.csv_max_rows} rows; later rows were not imported",
                    ),
                )
                break
            if broken is not None:
                # The record that broke the reader is a rejected row; nothing after it can be trusted.
                report.rows += 1
                report.rejected += 1
                self._error(
                    report, domain.RowError(rows.reader.line_num, "*", f"the file {broken}; later rows were not read")
                )
                break
            if len(batch) < size:
                break
        await self._finish(workspace_id, report)
        return report

    def _error(self, report: ImportReport, error: domain.RowError) -> None:
        if len(report.errors) < self.settings.csv_max_reported_errors:
            report.errors.append({"row": error.row, "column": error.column, "message": error.message})
        else:
            report.errors_truncated = True

    async def _start(self, workspace_id: str, name: str) -> ImportReport:
        import_id, group_id, started_id = uuid.uuid4(), uuid.uuid4(), self._started_id
        now = self.service.clock.now()
        async with self.service.engine.begin() as conn:
            await conn.execute(
                source_groups.insert().values(
                    source_group_id=group_id,
                    workspace_id=workspace_id,
                    name=name,
                    kind="csv",
                    search_id=import_id,
                    enrichment=self.enrichment,
                    created_at=now,
                )
            )
            await conn.execute(
                searches.insert().values(
                    search_id=import_id,
                    workspace_id=workspace_id,
                    source_group_id=group_id,
                    name=name,
                    kind="csv",
                    criteria={},
                    target_count=0,
                    status="importing",
                    started_event_id=started_id,
                    created_at=now,
                    updated_at=now,
                )
            )
            started = SearchStarted(
                search_id=import_id, source_group_id=group_id, kind="csv", name=name, criteria={}, target_count=0
            )
            await self.service.emit(
                conn,
                [
                    search_envelope(
                        self.service,
                        started,
                        workspace_id=workspace_id,
                        search_id=import_id,
                        what="started",
                        started_id=started_id,
                    )
                ],
            )
        return ImportReport(import_id=import_id, source_group_id=group_id)

    async def _batch(
        self, workspace_id: str, report: ImportReport, header: domain.HeaderMap, width: int, batch: list[Record]
    ) -> None:
        good: list[tuple[int, domain.LeadInput]] = []
        for row_no, record, bad_encoding in batch:
            report.rows += 1
            result: domain.LeadInput | list[domain.RowError] = (
                [domain.RowError(row_no, "*", "is not UTF-8 text; save the file as UTF-8")]
                if bad_encoding
                else domain.validate_row(row_no, record, header, header_width=width)
            )
            if isinstance(result, list):
                report.rejected += 1
                for error in result:
                    self._error(report, error)
            else:
                good.append((row_no, result))
        if not good:
            return
        now = self.service.clock.now()
        async with self.service.engine.begin() as conn:
            envelopes: list[Envelope[Any]] = []
            imported = duplicates = 0
            for row_no, lead in good:
                added = await add_lead(
                    conn,
                    workspace_id,
                    lead,
                    source=LeadSource.csv.value,
                    source_group_id=report.source_group_id,
                    search_id=report.import_id,
                    fit_signals=[],
                    now=now,
                    enrichment=self.enrichment,
                )
                envelopes.extend(
                    self._envelope(workspace_id, report, event, what)
                    for what, event in lead_events(
                        added,
                        lead,
                        LeadSource.csv,
                        search_id=report.import_id,
                        source_group_id=report.source_group_id,
                        fit=[],
                        enrichment=self.enrichment,
                    )
                )
                if added.new_lead:
                    imported += 1
                else:
                    duplicates += 1
                    reason = "already in this workspace" if added.new_member else "repeated in this file"
                    if len(report.duplicate_rows) < self.settings.csv_max_reported_errors:
                        report.duplicate_rows.append({"row": row_no, "lead_id": str(added.lead_id), "reason": reason})
            await conn.execute(
                update(searches)
                .where(searches.c.search_id == report.import_id)
                .values(
                    found=searches.c.found + len(batch),
                    new_leads=searches.c.new_leads + imported,
                    duplicates=searches.c.duplicates + duplicates,
                    members=searches.c.members + imported + duplicates,
                    updated_at=now,
                )
            )
            await self.service.emit(conn, envelopes)
        report.imported += imported
        report.duplicates += duplicates
        self.service.wake_relay()

    def _envelope(self, workspace_id: str, report: ImportReport, data: Event, what: str) -> Envelope[Any]:
        return search_envelope(
            self.service,
            data,
            workspace_id=workspace_id,
            search_id=report.import_id,
            what=what,
            started_id=self._started_id,
        )

    async def _finish(self, workspace_id: str, report: ImportReport) -> None:
        now = self.service.clock.now()
        summary = {k: v for k, v in report.__dict__.items() if k in {"rows", "imported", "rejected", "duplicates"}}
        async with self.service.engine.begin() as conn:
            await conn.execute(
                update(searches)
                .where(searches.c.search_id == report.import_id)
                .values(
                    status="finished",
                    finish_reason="exhausted",
                    exhausted=True,
                    pages=1,
                    invalid=report.rejected,
                    report=summary,
                    updated_at=now,
                    finished_at=now,
                )
            )
            page = SearchPageCompleted(
                search_id=report.import_id,
                page=1,
                cursor=None,
                found=report.rows,
                new_leads=report.imported,
                duplicates=report.duplicates,
                total_new=report.imported,
            )
            finished = SearchFinished(search_id=report.import_id, reason="exhausted", total_new=report.imported)
            await self.service.emit(
                conn,
                [
                    self._envelope(workspace_id, report, page, "page:1"),
                    self._envelope(workspace_id, report, finished, "finished"),
                ],
            )
        self.service.wake_relay()
