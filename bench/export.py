"""Export benchmark: ``leadstream export`` (decode, flatten into typed columns, write Parquet) against
consume-and-discard, measured in the same run on the same log.

    python bench/export.py                    # 100,000 events
    python bench/export.py --events 20000     # a quicker run

It produces N synthetic events (services/projection/workload.py) to a fresh, prefixed topic set, then alternates
a raw consume-and-discard loop (bench/projection.py's baseline) and a full export into a fresh folder for
``--rounds`` rounds, and reports the best of each and their ratio. Results go to bench/results/export.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiokafka.admin import AIOKafkaAdminClient  # noqa: E402

from bench.projection import consume_and_discard, encoded, log, produce  # noqa: E402
from leadstream_cli.export import export_events  # noqa: E402
from services.projection.settings import ProjectionSettings  # noqa: E402
from services.projection.workload import generate  # noqa: E402
from services.runtime.kafka import all_topics, apply_topics  # noqa: E402


async def main(args: argparse.Namespace) -> int:
    base = ProjectionSettings()
    settings = base.model_copy(
        update={"topic_prefix": f"benchx{uuid.uuid4().hex[:8]}.", "topic_partitions": args.partitions}
    )
    folder = Path(tempfile.mkdtemp(prefix="leadstream-export-bench-"))
    discard: list[float] = []
    exports: list[float] = []
    try:
        envelopes = generate(leads=args.leads, campaigns=args.campaigns, events=args.events, seed=args.seed).envelopes
        await apply_topics(settings, partitions=args.partitions)
        log(f"producing {len(envelopes):,} events to {settings.topic_prefix}*")
        await produce(settings, await encoded(settings, envelopes, seal=False))  # plaintext: no key store needed
        n = len(envelopes)
        del envelopes
        for i in range(args.rounds):
            discard.append(await consume_and_discard(settings, n, args.batch))
            report = await export_events(settings, folder / f"round{i}", batch_records=args.batch)
            if report.rows != n or report.skipped:
                raise SystemExit(f"export wrote {report.rows} of {n} events ({len(report.skipped)} skipped)")
            exports.append(report.rate)
            files = len(report.files)
            log(
                f"round {i + 1}/{args.rounds}: consume-and-discard {discard[-1]:,.0f} records/s, "
                f"export {exports[-1]:,.0f} records/s ({files} files)"
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if not args.keep:
            admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
            await admin.start()
            try:
                await admin.delete_topics([name for name, _, _ in all_topics(settings)])
            finally:
                await admin.close()
    result = {
        "events": n,
        "partitions_per_topic": args.partitions,
        "batch_records": args.batch,
        "consume_discard_records_per_s": round(max(discard)),
        "consume_discard_runs": [round(d) for d in discard],
        "export_records_per_s": round(max(exports)),
        "export_runs": [round(e) for e in exports],
        "ratio_export_vs_consume": round(max(exports) / max(discard), 3),
        "ratio_rounds": [round(e / d, 3) for e, d in zip(exports, discard, strict=True)],
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")  # noqa: ASYNC240 - once, at the end
    print(f"{'events':<22} {n:,}")
    print(f"{'consume-and-discard':<22} {result['consume_discard_records_per_s']:,} records/s")
    print(f"{'export (Parquet)':<22} {result['export_records_per_s']:,} records/s")
    print(f"{'export / consume':<22} {result['ratio_export_vs_consume']:.1%}")
    print(f"written to {out}")
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=100_000, help="events to produce (default 100,000)")
    p.add_argument("--leads", type=int, default=1_000)
    p.add_argument("--campaigns", type=int, default=20)
    p.add_argument("--partitions", type=int, default=6, help="partitions per topic")
    p.add_argument("--batch", type=int, default=10_000, help="records per poll")
    p.add_argument("--rounds", type=int, default=3, help="rounds of consume-and-discard then export; best of each")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "export.json"))
    p.add_argument("--keep", action="store_true", help="keep the topics afterwards")
    return p.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse())))
