"""Replay in pod mode: a rebuild read by 2 independent worker processes against 1, measured in the same run.

    python bench/replay_pods.py                   # 60,000 events, 2 rounds; adds "pod_mode" to projection.json
    python bench/replay_pods.py --events 20000 --rounds 1

It produces a synthetic log (services/projection/workload.py) to fresh topics and a fresh database, then, for
each round, rebuilds the views twice the way an Indexed Job does (``services/projection/pods.py``): once
with one worker and once with two, each worker a separate ``leadstream replay worker`` process as a pod is
(its own interpreter, Kafka consumer and Postgres connection). A rebuild's time runs from starting its
worker processes until the last one exited, having completed the rebuild (timeline key, summaries): process
start-up counts, as a pod's would. The 1- and 2-worker rebuilds alternate, so both see the same moments of
a shared machine; the ratio of the best of each is reported, with each round's own.

The figures are merged into ``bench/results/projection.json`` under ``pod_mode`` (run it after
bench/projection.py, which rewrites that file), with the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# As the demo runs: the development key-encryption key (the workers inherit it, see KEPT).
os.environ.setdefault("LEADSTREAM_ENV", "development")

import asyncpg  # noqa: E402

from bench.projection import encoded, fresh_world, log, produce  # noqa: E402
from services.projection.checksum import dsn, views_checksum  # noqa: E402
from services.projection.pods import start_pod_rebuild  # noqa: E402
from services.projection.replay import replay_info  # noqa: E402
from services.projection.settings import ProjectionSettings  # noqa: E402
from services.projection.workload import generate  # noqa: E402

LEADSTREAM = Path(sys.executable).with_name("leadstream")
KEPT = ("LEADSTREAM_ENV", "LEADSTREAM_KEY_ENCRYPTION_KEY")
"""Settings the workers inherit (they open the log's sealed fields as the services do); every other ``LEADSTREAM_``
variable of this process is left out, so that only the rebuild's own settings reach them."""


async def pod_rebuild(settings: ProjectionSettings, name: str, workers: int, batch: int) -> dict[str, Any]:
    """Start the rebuild ``name`` for ``workers`` and run them as processes at once; its figures."""
    await start_pod_rebuild(settings, name, workers=workers, batch_records=batch)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LEADSTREAM_") or k in KEPT},
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "LEADSTREAM_TOPIC_PREFIX": settings.topic_prefix,
        "LEADSTREAM_LOG_LEVEL": "WARNING",
        "TERM": "dumb",
    }
    started = time.perf_counter()
    procs = [
        await asyncio.create_subprocess_exec(
            str(LEADSTREAM),
            *("replay", "worker", "--rebuild", name, "--index", str(i)),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        for i in range(workers)
    ]
    outputs = await asyncio.gather(*(p.communicate() for p in procs))
    seconds = time.perf_counter() - started
    for p, (_, err) in zip(procs, outputs, strict=True):
        if p.returncode != 0:
            raise SystemExit(f"replay worker of {name} exited {p.returncode}: {err.decode()[-2000:]}")
    conn = await asyncpg.connect(dsn(settings.database_url))
    try:
        schema = f"projection_{name}"
        info = await replay_info(conn, schema)
        digest = (await views_checksum(conn, schema)).digest
    finally:
        await conn.close()
    if info.get("status") != "complete":
        raise SystemExit(f"rebuild {name} is {info.get('status')!r} after its workers exited")
    began = min(datetime.fromisoformat(info[f"worker.{i}"]["read_started_at"]) for i in range(workers))
    reading = (datetime.fromisoformat(info["finished_at"]) - began).total_seconds()
    return {
        "seconds": seconds,
        "records": info["records"],
        "rate": info["records"] / seconds,
        "reading_seconds": reading,
        "reading_rate": info["records"] / reading,
        "read_seconds": [info[f"worker.{i}"]["seconds"] for i in range(workers)],
        "digest": digest,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    one: list[dict[str, Any]] = []
    two: list[dict[str, Any]] = []
    async with fresh_world("pods", args.partitions, keep=args.keep) as settings:
        envelopes = generate(leads=args.leads, campaigns=args.campaigns, events=args.events, seed=args.seed).envelopes
        log(f"producing {len(envelopes):,} events to {settings.topic_prefix}*")
        # Plaintext: a ratio of workers (bench/projection.py measures what encryption costs a replay).
        await produce(settings, await encoded(settings, envelopes, seal=False))
        for i in range(args.rounds):
            one.append(await pod_rebuild(settings, f"one{i}", 1, args.batch))
            two.append(await pod_rebuild(settings, f"two{i}", 2, args.batch))
            log(
                f"round {i + 1}/{args.rounds}: 1 worker {one[-1]['rate']:,.0f} records/s "
                f"({one[-1]['reading_rate']:,.0f} reading), 2 workers {two[-1]['rate']:,.0f} records/s "
                f"({two[-1]['reading_rate']:,.0f} reading)"
            )
    if len({r["digest"] for r in one + two}) != 1:
        raise SystemExit("the rebuilds' views differ (checksums)")
    best_one, best_two = max(r["rate"] for r in one), max(r["rate"] for r in two)
    read_one, read_two = max(r["reading_rate"] for r in one), max(r["reading_rate"] for r in two)
    return {
        "what": "a rebuild read by N `leadstream replay worker` processes (the pods of an Indexed Job), best of "
        "the rounds. records_per_s: from starting the processes to the last one's exit (process start-up "
        "included, as a pod's); reading_records_per_s: from the first worker connected to the rebuild completed "
        "(timeline key and summaries included)",
        "events": args.events,
        "partitions_per_topic": args.partitions,
        "batch_records": args.batch,
        "one_worker_records_per_s": round(best_one),
        "two_workers_records_per_s": round(best_two),
        "one_worker_runs": [round(r["rate"]) for r in one],
        "two_workers_runs": [round(r["rate"]) for r in two],
        "two_workers_read_seconds": [[round(s, 2) for s in r["read_seconds"]] for r in two],
        "ratio_rounds": [round(b["rate"] / a["rate"], 2) for a, b in zip(one, two, strict=True)],
        "ratio_two_vs_one_worker": round(best_two / best_one, 2),
        "one_worker_reading_records_per_s": round(read_one),
        "two_workers_reading_records_per_s": round(read_two),
        "ratio_reading_rounds": [
            round(b["reading_rate"] / a["reading_rate"], 2) for a, b in zip(one, two, strict=True)
        ],
        "ratio_two_vs_one_worker_reading": round(read_two / read_one, 2),
        "same_views": True,
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=60_000, help="events to produce (default 60,000)")
    p.add_argument("--leads", type=int, default=1_000)
    p.add_argument("--campaigns", type=int, default=20)
    p.add_argument("--partitions", type=int, default=6, help="partitions per topic")
    p.add_argument("--batch", type=int, default=10_000, help="records per transaction")
    p.add_argument("--rounds", type=int, default=2, help="rounds of (1 worker, 2 workers); the best of each counts")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "projection.json"))
    p.add_argument("--keep", action="store_true", help="keep the topics and the database afterwards")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure and merge the figures into ``args.out`` under ``pod_mode``."""
    figures = asyncio.run(main(args))
    out = Path(args.out)
    existing = json.loads(out.read_text()) if out.exists() else {}
    existing["pod_mode"] = figures
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(existing, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    run(parse())
