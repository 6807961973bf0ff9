"""Drift-check benchmark: wall time of a 10k reference × 10k current check with the vectors stored, and its parts.

    python -m benchmarks.bench_drift            # real IT service tickets (../shared/data), ≈ 3 min
    python -m benchmarks.bench_drift --quick    # 200 × 200 sample tickets; writes to a temp folder

The vectors are stored in ChromaDB first (one cold encode, reported, not part of the goal); then each repeat runs
the check as a scheduled one does: read the stored vectors back (the embedding part), then the drift statistics
with Evidently (the rest). Medians of the repeats.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import (
    ROOT,
    figure,
    interleaved,
    measure,
    median,
    output_arguments,
    output_paths,
    run_facts,
    save,
    say,
    shown,
)

DATA = ROOT.parent / "shared" / "data" / "it_service_tickets" / "tickets.csv"
SAMPLE = ROOT / "data" / "sample_tickets.csv"
GOAL_SECONDS = 60.0


def report(details: dict[str, object]) -> dict[str, list]:
    """The summary row (the goal), the further figures and the notes of the drift part."""
    size, seconds = details["tickets"], details["median_seconds"]
    total, goal = seconds["check"], f"< {GOAL_SECONDS:g} s"
    name = f"drift check, {size:,} × {size:,} tickets, vectors stored"
    summary = [
        figure(name, total, "s", baseline=GOAL_SECONDS, baseline_label="limit", goal=goal, met=total < GOAL_SECONDS)
    ]
    figures = [
        figure("reading the stored vectors", seconds["vectors"], "s", baseline=total, baseline_label="whole check"),
        figure(
            "drift statistics (Evidently)", seconds["statistics"], "s", baseline=total, baseline_label="whole check"
        ),
        figure("cold encode + store of both windows (once, not in the goal)", details["cold_encode_seconds"], "s"),
    ]
    notes = [
        f"- {size:,} reference × {size:,} current tickets of `{details['data']}`, torch 2 threads, medians of "
        f"{details['repeats']} run(s). The check's ratio is its time over the limit, its parts' their shares of it.",
    ]
    return {"summary": summary, "figures": figures, "notes": notes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_drift", description=__doc__.split("\n")[0])
    output_arguments(parser)
    args = parser.parse_args(argv)
    results, report_path = output_paths(args)
    import torch

    from ticketflow.components.config import TicketflowConfig
    from ticketflow.components.embed import EncoderSpec, VectorStore, embed_with_cache
    from ticketflow.components.prepare import text_hash
    from ticketflow.monitoring.drift import check_drift

    torch.set_num_threads(2)
    path, size, repeats = (SAMPLE, 200, 1) if args.quick else (DATA, 10_000, 3)
    source = pd.read_csv(path, on_bad_lines="skip")
    text, label = ("Document", "Topic_group") if "Document" in source else ("body", "category")
    frame = pd.DataFrame(
        {
            "text": source[text].fillna("").astype(str),
            "predicted": source[label].fillna("").astype(str),
            "confidence": np.random.default_rng(0).uniform(0.5, 1.0, len(source)),
        }
    )
    order = np.random.default_rng(42).permutation(len(source))
    reference = frame.iloc[order[:size]].reset_index(drop=True)
    current = frame.iloc[order[size : 2 * size]].reset_index(drop=True)
    run = run_facts("python -m benchmarks.bench_drift" + (" --quick" if args.quick else ""), args.quick, ("evidently",))
    spec = EncoderSpec.from_config(TicketflowConfig())  # `make run`'s encoder
    encoder = spec.load()
    parts: dict[str, list[float]] = {"vectors": [], "statistics": []}
    with tempfile.TemporaryDirectory() as tmp, measure() as load:
        store = VectorStore(str(Path(tmp) / "chroma"))

        def vectors(tickets: pd.DataFrame) -> np.ndarray:
            texts = tickets["text"].tolist()
            return embed_with_cache(texts, [text_hash(t) for t in texts], spec, store, 64, model=encoder)[0]

        say(f"storing vectors for {2 * size} tickets of {shown(path)} (cold encode, once)")
        started = time.perf_counter()
        vectors(pd.concat([reference, current]))
        cold = time.perf_counter() - started

        def check(_: int) -> None:
            started = time.perf_counter()
            ref_vectors, cur_vectors = vectors(reference), vectors(current)
            parts["vectors"].append(time.perf_counter() - started)
            started = time.perf_counter()
            check_drift(
                current=current,
                reference=reference,
                current_vectors=cur_vectors,
                reference_vectors=ref_vectors,
                target=label,
            )
            parts["statistics"].append(time.perf_counter() - started)

        total = median(interleaved({"check": check}, repeats)["check"])
    details = {"data": shown(path), "tickets": size, "repeats": repeats, "cold_encode_seconds": round(cold, 1)}
    details["median_seconds"] = {"check": total, **{part: median(values) for part, values in parts.items()}}
    say(f"drift check: {details['median_seconds']}, cold encode {cold:.0f} s")
    run |= {"finished": datetime.now(UTC).isoformat(timespec="seconds"), "other_cores": load.other_cores}
    data = {"run": run, **report(details), "details": details}
    save("drift", data, results, report_path)
    say(f"wrote the drift part of {results} and {report_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
