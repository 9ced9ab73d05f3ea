"""Append the latest ``make bench`` results to the run-by-run history and print the README's table.

    python bench/summary.py        # after bench/projection.py and bench/live.py

Reads ``bench/results/projection.json`` and ``bench/results/live.json`` (the latest run of each), appends
one line per run to ``bench/results/history.json`` (the figures that matter, with the date, the load
average and the commit) and prints the compact Markdown table the top-level README shows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _load(name: str) -> dict[str, Any]:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else {}


def _commit() -> str | None:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or None


def entry(replay: dict[str, Any], live: dict[str, Any]) -> dict[str, Any]:
    """One history line: the ratios and the conditions they were measured in."""
    out: dict[str, Any] = {
        "measured_at": replay.get("measured_at") or live.get("measured_at"),
        "commit": _commit(),
        "load_average": replay.get("load_average"),
        "replay_vs_consume": replay.get("ratio_projection_vs_consume"),
        "replay_vs_consume_rounds": replay.get("ratio_rounds"),
        "replay_vs_naive": replay.get("ratio_projection_vs_naive"),
        "workers_vs_one_process": replay.get("ratio_workers_vs_one_process"),
    }
    pods = replay.get("pod_mode")
    if pods:
        out["pod_mode_two_vs_one_worker"] = pods.get("ratio_two_vs_one_worker")
        out["pod_mode_two_vs_one_worker_reading"] = pods.get("ratio_two_vs_one_worker_reading")
        out["pod_mode_load_average"] = pods.get("load_average")
    if live:
        out["live_load_average"] = live.get("load_average")
        for rate, figures in live.get("rates", {}).items():
            out[f"live_{rate}_p99_visible_ms"] = figures["produce_to_visible"].get("p99_ms")
            out[f"live_{rate}_p99_noop_ms"] = figures["produce_to_consumed_noop"].get("p99_ms")
            out[f"live_{rate}_p99_ratio"] = figures.get("p99_ratio")
            out[f"live_{rate}_p99_same_hops_ms"] = (figures.get("produce_to_visible_same_hops") or {}).get("p99_ms")
            out[f"live_{rate}_same_hops_p99_ratio"] = figures.get("same_hops_p99_ratio")
            out[f"live_{rate}_slowest_1pct"] = figures.get("slowest_1pct")
        out["api_to_kafka_p99_ms"] = live.get("api_to_kafka", {}).get("p99_ms")
        out["api_to_kafka_p50_ms"] = live.get("api_to_kafka", {}).get("p50_ms")
        out["api_to_kafka_poll_only_p50_ms"] = (live.get("api_to_kafka_poll_only") or {}).get("p50_ms")
        out["api_to_kafka_poll_only_p99_ms"] = (live.get("api_to_kafka_poll_only") or {}).get("p99_ms")
    return out


def table(replay: dict[str, Any], live: dict[str, Any]) -> str:
    """The README's table: measured ratio, target, date."""
    date = str(replay.get("measured_at") or live.get("measured_at") or "")[:10]
    live_date = str(live.get("measured_at") or date)[:10]  # the live, outbox and memory rows come from the live run
    load = replay.get("load_average")
    rows = [
        ("Replay / consume-and-discard", replay.get("ratio_projection_vs_consume"), ">= 0.30", date),
        ("Replay / naive projection", f"{replay.get('ratio_projection_vs_naive')}x", ">= 25x", date),
        (
            f"Replay, {replay.get('projection_replay_workers')} worker processes / 1",
            replay.get("ratio_workers_vs_one_process"),
            "reported",
            date,
        ),
    ]
    pods = replay.get("pod_mode")
    if pods:
        rows.append(
            (
                "Replay, pod mode: 2 worker processes / 1 (start-up included; reading only)",
                f"{pods.get('ratio_two_vs_one_worker')}; {pods.get('ratio_two_vs_one_worker_reading')} "
                f"(load {', '.join(f'{x:.1f}' for x in pods.get('load_average') or [])})",
                "reported",
                str(pods.get("measured_at", ""))[:10],
            )
        )
    for rate, figures in live.get("rates", {}).items():
        vis, noop = figures["produce_to_visible"], figures["produce_to_consumed_noop"]
        rows.append(
            (
                f"Live {rate}/s: p99 produce -> visible / no-op consumer",
                f"{figures.get('p99_ratio')} ({vis.get('p99_ms')} / {noop.get('p99_ms')} ms)",
                "<= 5",
                live_date,
            )
        )
        hops = figures.get("produce_to_visible_same_hops")
        if hops and not hops.get("skipped"):  # none in runs before the floor, skipped with --no-same-hops
            rows.append(
                (
                    f"Live {rate}/s, the same hops with the least work (floor): its p99 / no-op; projection's / its",
                    f"{figures.get('same_hops_p99_ratio')} ({hops.get('p99_ms')} ms); "
                    f"{figures.get('p99_over_same_hops')}",
                    "reported",
                    live_date,
                )
            )
        tail = figures.get("slowest_1pct")
        if tail:  # none in runs before it
            longest = tail["longest_stage"]
            also = tail.get("floor_also_slow")
            if "transaction_begin_to_visible" in longest:
                split = "to the batch / the batch and the read"
                counts = f"{longest['produce_to_transaction_begin']} / {longest['transaction_begin_to_visible']}"
            else:  # runs before the waiting reads: the announcement split the batch from the read
                split = "to the batch / the batch / the read"
                counts = (
                    f"{longest['produce_to_transaction_begin']} / {longest['transaction_begin_to_announced']} / "
                    f"{longest['announced_to_visible']}"
                )
            rows.append(
                (
                    f"Live {rate}/s, its slowest 1 %: longest stage ({split}); the floor slow too",
                    f"{counts} of {tail['probes']}; "
                    + (f"{also} of {tail['probes']}" if also is not None else "not measured"),
                    "reported",
                    live_date,
                )
            )
    api = live.get("api_to_kafka")
    if api and api.get("skipped"):
        rows.append(("API call -> event on Kafka (outbox)", f"not measured: {api['skipped']}", "reported", live_date))
    elif api:
        rows.append(
            (
                "API call -> event on Kafka (outbox), p50 / p99",
                f"{api.get('p50_ms')} / {api.get('p99_ms')} ms",
                "reported",
                live_date,
            )
        )
    before = live.get("api_to_kafka_poll_only")
    if before and before.get("p50_ms") is not None:
        rows.append(
            (
                "  the same, relay polling every 50 ms without LISTEN (before), p50 / p99",
                f"{before.get('p50_ms')} / {before.get('p99_ms')} ms",
                "reported",
                live_date,
            )
        )
    for name, mb in sorted((live.get("rss_idle_mb") or {}).items()):
        under = (live.get("rss_under_load_mb") or {}).get(name)
        rows.append((f"RSS {name}, idle / at 1,000/s", f"{mb} / {under} MB", "reported", live_date))
    idle_cpu = live.get("cpu_idle_cores")
    if idle_cpu:
        by_rate = [
            f"{sum(f.get('cpu_cores', {}).values()):.2f} at {rate}/s" for rate, f in live.get("rates", {}).items()
        ]
        shown = "; ".join([f"{sum(idle_cpu.values()):.2f} idle", *by_rate])
        rows.append(("CPU of all services (cores of the 2)", shown, "reported", live_date))
    lines = ["| measure | measured | target | date |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    if load:
        lines.append(
            f"\n(load average after the replay: {', '.join(f'{x:.1f}' for x in load)}",
        )
    if live.get("load_average"):
        lines[-1] += f"; after the live run: {', '.join(f'{x:.1f}' for x in live['load_average'])}"
    if load or live.get("load_average"):
        lines[-1] += ")"
    return "\n".join(lines)


def main() -> int:
    replay, live = _load("projection.json"), _load("live.json")
    if not replay and not live:
        print("no results: run bench/projection.py and bench/live.py first", file=sys.stderr)
        return 1
    history_path = RESULTS / "history.json"
    history = json.loads(history_path.read_text()) if history_path.exists() else []
    line = entry(replay, live)
    if history and line["measured_at"] is not None and history[-1].get("measured_at") == line["measured_at"]:
        history[-1] = line  # the same run summarised again (e.g. to print its table): one line per run
    else:
        history.append(line)
    history_path.write_text(json.dumps(history, indent=1) + "\n")
    print(table(replay, live))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
