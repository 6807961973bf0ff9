"""Drift-check benchmark: wall time for 10k reference × 10k current tickets, and where the time goes.

    python -m benchmarks.bench_drift [--quick]

Real IT-service tickets (../shared/data), the bundled embedding model, a ChromaDB store and Evidently. The
vectors are stored first (one cold encode, reported but not part of the goal); then the check runs with
vectors stored, as a scheduled check does: reuse the stored vectors (embedding share) and run the drift
statistics with Evidently (the rest). Medians of several runs. Writes its section of BENCHMARKS.md (or `--out`)
between `<!-- drift:start -->` and `<!-- drift:end -->`.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import ROOT, say, write_section

DATA = ROOT.parent / "shared" / "data" / "it_service_tickets" / "tickets.csv"
GOAL_SECONDS = 60.0
SECTION_NAME = "drift"  # its section of BENCHMARKS.md: <!-- drift:start --> … <!-- drift:end -->


def main() -> int:
    parser = argparse.ArgumentParser(description="drift-check benchmark")
    parser.add_argument("--quick", action="store_true", help="2k × 2k, 2 repeats (development)")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md", help="report whose section to write")
    args = parser.parse_args()
    import torch

    from ticketflow.components.config import BUNDLED_EMBEDDING_MODEL
    from ticketflow.components.embed import VectorStore, embed_with_cache, load_sentence_model
    from ticketflow.components.prepare import text_hash
    from ticketflow.monitoring.drift import check_drift

    torch.set_num_threads(2)
    size, repeats = (2000, 2) if args.quick else (10_000, 3)
    source = pd.read_csv(DATA)
    order = np.random.default_rng(42).permutation(len(source))
    ref_rows, cur_rows = order[:size], order[size : 2 * size]
    frame = pd.DataFrame(
        {
            "text": source["Document"],
            "predicted": source["Topic_group"],
            "confidence": np.random.default_rng(0).uniform(0.5, 1.0, len(source)),
        }
    )
    reference, current = frame.iloc[ref_rows].reset_index(drop=True), frame.iloc[cur_rows].reset_index(drop=True)
    encoder = load_sentence_model(BUNDLED_EMBEDDING_MODEL)
    with tempfile.TemporaryDirectory() as tmp:
        store = VectorStore(str(Path(tmp) / "chroma"))
        texts = pd.concat([reference["text"], current["text"]]).tolist()
        hashes = [text_hash(t) for t in texts]
        say(f"storing vectors for {len(texts)} tickets (cold encode, once)")
        started = time.perf_counter()
        embed_with_cache(texts, hashes, BUNDLED_EMBEDDING_MODEL, store, 64, model=encoder)
        cold = time.perf_counter() - started
        say(f"  cold encode + store: {cold:.1f} s")
        embed_times, check_times, totals = [], [], []
        for run in range(repeats):
            started = time.perf_counter()
            ref_vectors, _ = embed_with_cache(
                reference["text"].tolist(), hashes[:size], BUNDLED_EMBEDDING_MODEL, store, 64, model=encoder
            )
            cur_vectors, encoded = embed_with_cache(
                current["text"].tolist(), hashes[size:], BUNDLED_EMBEDDING_MODEL, store, 64, model=encoder
            )
            embedded = time.perf_counter()
            result, _ = check_drift(current, reference, cur_vectors, ref_vectors, "Topic_group")
            done = time.perf_counter()
            embed_times.append(embedded - started)
            check_times.append(done - embedded)
            totals.append(done - started)
            say(
                f"  run {run + 1}: {totals[-1]:.1f} s (vectors {embed_times[-1]:.1f} s, encoded {encoded}; "
                f"drift statistics {check_times[-1]:.1f} s); drift detected: {result.drift_detected}"
            )
    total, embed, check = (statistics.median(v) for v in (totals, embed_times, check_times))
    met = "yes" if total < GOAL_SECONDS else "**no**"
    text = f"""## Drift check (`python -m benchmarks.bench_drift`{" --quick" if args.quick else ""})

Measured {datetime.now(UTC).isoformat(timespec="seconds")} on {platform.machine()}, {os.cpu_count()} cores, torch
threads 2. {size:,} reference × {size:,} current IT-service tickets, vectors already stored in ChromaDB
(the cold encode that stored them took {cold:.0f} s and is not part of the goal). Medians of {repeats} runs.

| figure | value | share | goal | met? |
|---|---|---|---|---|
| drift check wall time, vectors stored | {total:.1f} s | 100 % | < {GOAL_SECONDS:.0f} s | {met} |
| reading stored vectors (embedding) | {embed:.1f} s | {100 * embed / total:.0f} % | — | — |
| drift statistics (Evidently, bootstraps, per-queue tests) | {check:.1f} s | {100 * check / total:.0f} % | — | — |
"""
    if not write_section(args.out, SECTION_NAME, text):
        say(f"error: {args.out} has the drift markers more than once or out of order; the section:\n{text}")
        return 1
    say(f"wrote the drift section of {args.out}: {total:.1f} s (vectors {embed:.1f} s, statistics {check:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
