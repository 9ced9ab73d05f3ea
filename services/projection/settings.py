"""Projection settings (``LEADSTREAM_*``)."""

from __future__ import annotations

from pydantic import Field

from services.runtime.settings import RuntimeSettings


class ProjectionSettings(RuntimeSettings):
    """Settings of the projection service."""

    service_name: str = "projection"
    http_port: int = 8106
    projection_batch_max_records: int = Field(2000, ge=1, description="Records applied per transaction at most.")
    consumer_fetch_min_bytes: int = Field(
        1,
        ge=1,
        description="Bytes a fetch waits for (at most consumer_fetch_max_wait_ms). The projection's default is 1: "
        "a fetch is answered as soon as a record is there, since what it applies is what users see; the batches "
        "still grow with the traffic (the next one takes everything that came while one commits). Measured against "
        "the other services' 16384 (bench/results/NOTES.md, 2026-12-05): p99 produce -> visible 35-38 ms instead "
        "of 78-79 at 200 events/s, 74-76 instead of 97-111 at 1,000/s, for 0.45 of a core instead of 0.16 at "
        "200/s (0.41 instead of 0.26 at 1,000/s; the same when idle).",
    )
    consumer_fetch_max_wait_ms: int = Field(
        500,
        ge=0,
        le=5_000,
        description="How long the broker may hold a fetch that found nothing. With consumer_fetch_min_bytes at 1 a "
        "fetch is answered at the first record whatever this is, so it only sets how often an idle projection asks: "
        "Kafka's default (500) instead of the other services' 50, two fetches a second instead of twenty.",
    )
    projection_ready_max_lag: int = Field(
        1000, ge=0, description="/readyz reports not-ready while any partition is further behind than this."
    )
    projection_ready_stall_s: float = Field(
        60.0,
        gt=0,
        description="/readyz reports not-ready while a partition is behind and its applied offset has not moved"
        " for this long (a batch that hangs on a lock, a stuck connection), whatever the lag.",
    )
    projection_resync_interval_s: float = Field(
        1.0, gt=0, description="When idle, how often the stored offsets are compared with the consumer's position."
    )
    projection_waiting_after_h: float = Field(
        24.0, ge=0, description="An invite older than this without acceptance shows as 'waiting acceptance'."
    )
    projection_changes_keep_h: float = Field(
        24.0, gt=0, description="How long the change log keeps a change (a client further behind reloads)."
    )
    projection_changes_prune_interval_s: float = Field(60.0, gt=0, description="How often old changes are pruned.")
    projection_watches_max: int = Field(
        1000,
        ge=0,
        le=100_000,
        description="Timeline reads waiting for a lead's next change (`?wait=`) at once in a process; one more is "
        "answered 503 with Retry-After (each holds a connection and, when woken, one read).",
    )
    projection_crash_after_batches: int = Field(
        0,
        ge=0,
        description="Fault injection for reliability tests: SIGKILL this process right after the N-th batch's "
        "database commit, before the Kafka offset commit. 0 (the default) disables it.",
    )
