"""The six benchmarks in quick mode: tiny inputs, results in a temp folder, the repo's report untouched.

Slow (a training run through kfp.local, the quality part's 16 small fits, a server, a drift check, a 20,000-row
prediction log: a few minutes on a busy 2-core machine), but it is the only check that the writers still fit the
code they measure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench_quality import ALTERNATIVES, CANDIDATES, FOLDS, schemes
from benchmarks.bench_store import ARMS, QUERIES, full_scans
from benchmarks.common import PARTS, REPORT, RESULTS, ROOT, machine_paths, render


def bench(name: str, *args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.bench_{name}", "--quick", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs every benchmark quickly into one results file; serving reuses the home training trained."""
    folder = tmp_path_factory.mktemp("bench")
    committed = RESULTS.read_bytes(), REPORT.read_bytes()
    results = folder / "results.json"
    bench("training", "--results", str(results), "--workdir", str(folder / "work"))
    bench("quality", "--results", str(results))
    bench("serving", "--results", str(results), "--home", str(folder / "work" / "home-sample"))
    bench("encoding", "--results", str(results), "--home", str(folder / "work" / "home-sample"))
    bench("drift", "--results", str(results))
    bench("store", "--results", str(results))
    assert (RESULTS.read_bytes(), REPORT.read_bytes()) == committed
    return results


def test_quick_runs_write_every_part_in_the_report_format(quick_results: Path) -> None:
    everything = json.loads(quick_results.read_text(encoding="utf-8"))
    assert list(everything) == list(PARTS)
    report = (quick_results.parent / "BENCHMARKS.md").read_text(encoding="utf-8")
    assert report == render(everything)
    assert report.startswith("# ticketflow benchmarks — QUICK MODE")
    assert machine_paths(report + quick_results.read_text(encoding="utf-8")) == []
    for name, part in everything.items():
        assert part["run"]["quick"] and part["run"]["finished"], name
        for row in part["summary"] + part["figures"]:
            assert isinstance(row["value"], float | int) and row["value"] == row["value"], row  # not NaN
            assert row["figure"] in report


def test_quick_runs_measure_each_goal(quick_results: Path) -> None:
    everything = json.loads(quick_results.read_text(encoding="utf-8"))
    goals = {row["figure"]: row for part in everything.values() for row in part["summary"] if row["goal"]}
    names = " | ".join(goals)
    for expected in (
        "sample category macro-f1",
        "sample category macro-F1, default model (stretch goal)",
        "ECE (15 bins), default model",
        "routed precision, default's thresholds",
        "lowest routed precision of a class",
        "routed coverage, default's thresholds",
        "sample priority macro-F1, default model, 2-fold CV mean",
        "embed step, fresh store",
        "V1 one ticket over HTTP",
        "V2 batches",
        "in-process `answer`",
        "V1 batches of 64 over HTTP",
        "`make predict` scoring",
        "V1 one ticket over HTTP, p50",
        "cold encode of",
        "macro-f1, `make run`'s vectors",
        "drift check",
    ):
        assert expected in names
    assert all(row["met"] in (True, False) and row["ratio"] > 0 for row in goals.values())


def test_quick_store_run_times_each_query_with_and_without_indexes(quick_results: Path) -> None:
    store = json.loads(quick_results.read_text(encoding="utf-8"))["store"]
    report = (quick_results.parent / "BENCHMARKS.md").read_text(encoding="utf-8")
    assert "## Prediction log at 20,000 rows" in report
    backends = store["details"]["backends"]
    assert list(backends) == ["SQLite"]  # quick mode: no PostgreSQL server
    sqlite = backends["SQLite"]
    for query in QUERIES:
        assert all(sqlite["median_seconds"][query][arm] > 0 for arm in ARMS), query
        assert sqlite["rows"][query] > 0, query
        assert f"| `{query}` | SQLite |" in report
    assert sqlite["rows"]["read(last_n=5000)"] == 5000 and sqlite["rows"]["review_queue(limit=50)"] == 50
    # The indexed plans answer from the indexes: none reads the whole log; without the indexes, those on the log do.
    assert sqlite["full_scans"] == {query: [] for query in QUERIES}
    assert all(full_scans(sqlite["plans_without_indexes"][query]) for query in QUERIES if query != "live_accuracy()")
    assert sqlite["pandas_review_queue_seconds"] > 0


def test_quick_quality_run_scores_every_candidate_and_scheme(quick_results: Path) -> None:
    quality = json.loads(quick_results.read_text(encoding="utf-8"))["quality"]
    report = (quick_results.parent / "BENCHMARKS.md").read_text(encoding="utf-8")
    assert "## Quality: candidates, cross-validation, calibration" in report
    candidates = quality["details"]["it_service"]["candidates"]
    assert list(candidates) == list(CANDIDATES)
    for key, name in CANDIDATES.items():
        scores = candidates[key]
        assert 0 <= scores["ece"] <= 1 and 0 < scores["macro_f1"] <= 1 and scores["train_seconds"] >= 0, key
        assert quality["details"]["it_service"]["one_ticket_median_s"][key] > 0, key
        assert f"| {name} |" in report
    # One row per target × scheme × tags variant: the bundled sample has category and priority, and tags.
    # Two targets in every scheme with and without tags; each alternative setting in the split and the plain CV.
    assert len(quality["table"]["rows"]) == 2 * len(schemes(FOLDS[1])) * 2 + 2 * 2 * len(ALTERNATIVES)
    assert sum(", logistic text candidates" in row[1] for row in quality["table"]["rows"]) == 4
    assert quality["details"]["customer_support"]["near_duplicates"]["clusters"] >= 0
