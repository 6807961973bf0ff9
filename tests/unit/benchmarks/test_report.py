"""The committed BENCHMARKS.md and benchmarks/results.json: one opening table, rendered from the JSON, no paths."""

from __future__ import annotations

import json

from benchmarks.common import PARTS, REPORT, RESULTS, machine_paths, render

FIGURE_KEYS = {"figure", "value", "unit", "baseline", "baseline_label", "ratio", "goal", "met"}


def test_report_and_results_name_no_path_of_the_machine_that_ran_them() -> None:
    assert machine_paths(RESULTS.read_text(encoding="utf-8")) == []
    assert machine_paths(REPORT.read_text(encoding="utf-8")) == []


def test_report_is_rendered_from_the_results() -> None:
    assert REPORT.read_text(encoding="utf-8") == render(json.loads(RESULTS.read_text(encoding="utf-8")))


def test_results_hold_every_part_with_figures_and_their_run() -> None:
    everything = json.loads(RESULTS.read_text(encoding="utf-8"))
    assert list(everything) == list(PARTS)
    for name, part in everything.items():
        assert part["summary"], name
        assert not part["run"]["quick"], f"{name}: quick-mode figures committed"
        assert part["run"]["source"] and part["run"]["started"]
        for row in part["summary"] + part["figures"]:
            assert set(row) == FIGURE_KEYS, row
            if row["baseline"]:
                assert abs(row["ratio"] - row["value"] / row["baseline"]) < 1e-9, row
            assert row["met"] in (True, False, None)
