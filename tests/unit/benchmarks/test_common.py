"""Unit tests of benchmarks/common.py: timing, the results file, the report and the no-machine-paths rule."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from benchmarks import common
from benchmarks.common import figure, interleaved, machine_paths, measure, render, save, shown


def part(name: str, value: float, baseline: float, **run: object) -> dict[str, object]:
    """A minimal part of the results file."""
    facts = {"command": f"python -m benchmarks.bench_{name}", "quick": False, "source": "measured by this command"}
    facts |= {"started": "2026-01-01T00:00:00+00:00", "git_commit": "abc1234", "machine": "x86_64, 2 cores, cpu"}
    return {
        "run": facts | run,
        "summary": [
            figure(f"{name} figure", value, "s", baseline=baseline, baseline_label="base", goal="≤ 1", met=True)
        ],
        "figures": [figure(f"{name} detail", 2.0, "ms")],
        "notes": [f"- how {name} measures"],
        "details": {"n": 1},
    }


# --------------------------------------------------------------------------------------------- timing


def test_interleaved_rotates_the_first_arm_and_times_every_call() -> None:
    calls: list[tuple[str, int]] = []
    arms = {name: (lambda i, name=name: calls.append((name, i))) for name in ("a", "b", "c")}
    seconds = interleaved(arms, 3)
    assert [name for name, _ in calls] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert {name: len(values) for name, values in seconds.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(s >= 0 for values in seconds.values() for s in values)


def test_interleaved_warm_calls_come_untimed_before_each_timed_call() -> None:
    calls: list[int] = []

    def arm(i: int) -> None:
        calls.append(i)
        if i < 2:  # the timed calls are slow, the warm ones instant
            time.sleep(0.02)

    seconds = interleaved({"only": arm}, 2, warm=True)
    assert calls == [2, 0, 3, 1]
    assert min(seconds["only"]) >= 0.015


def test_interleaved_pause_is_not_timed() -> None:
    seconds = interleaved({"noop": lambda i: None}, 2, pause=0.05)
    assert max(seconds["noop"]) < 0.04


def test_median_and_p99() -> None:
    values = list(range(1, 101))
    assert common.median(values) == 50.5
    assert common.p99(values) == pytest.approx(99.01)  # numpy's linear interpolation
    assert common.p99([3.0]) == 3.0
    assert common.median([]) != common.median([])  # NaN


def test_measure_times_an_idle_block() -> None:
    with measure() as load:
        time.sleep(0.05)
    assert 0.04 <= load.seconds < 5
    if Path("/proc/stat").exists():
        assert load.other_cores is not None and load.other_cores >= 0


# --------------------------------------------------------------------------------------------- results


def test_figure_ratio_is_value_over_baseline() -> None:
    row = figure("x", 3.0, "s", baseline=2.0, baseline_label="y", goal="≥ 1", met=True)
    assert row == {
        "figure": "x",
        "value": 3.0,
        "unit": "s",
        "baseline": 2.0,
        "baseline_label": "y",
        "ratio": 1.5,
        "goal": "≥ 1",
        "met": True,
    }
    assert figure("no baseline", 1.0)["ratio"] is None


def test_shown_paths_are_relative_to_the_repo_or_beside_it(tmp_path: Path) -> None:
    assert shown(common.ROOT / "data" / "sample_tickets.csv") == "data/sample_tickets.csv"
    assert shown(common.ROOT.parent / "shared" / "data" / "x.csv") == "../shared/data/x.csv"


@pytest.mark.parametrize(
    "text",
    [
        "data in /work/main/data/x.csv",
        "`/tmp/ticketflow-bench-1/home`",
        "/home/someone/.cache",
        f"run from {common.ROOT}",
    ],
)
def test_machine_paths_are_found(text: str) -> None:
    assert machine_paths(text)


@pytest.mark.parametrize(
    "text",
    [
        "POST /v1/models/ticket-classifier:predict and /v2/models/ticket-classifier/infer, `/metrics`",
        "../shared/data/it_service_tickets/tickets.csv and data/sample_tickets.csv",
        "10/20 requests, 2026-11-23T08:14:47+00:00, TF-IDF / LR",
    ],
)
def test_relative_paths_and_urls_are_not_machine_paths(text: str) -> None:
    assert machine_paths(text) == []


def test_save_keeps_the_other_parts_in_report_order_and_renders_from_the_file(tmp_path: Path) -> None:
    results, report = tmp_path / "results.json", tmp_path / "BENCHMARKS.md"
    save("drift", part("drift", 5.9, 60.0), results, report)
    save("training", part("training", 1.0, 2.0), results, report)
    save("drift", part("drift", 6.1, 60.0), results, report)
    everything = json.loads(results.read_text(encoding="utf-8"))
    assert list(everything) == ["training", "drift"]
    assert everything["drift"]["summary"][0]["value"] == 6.1
    assert report.read_text(encoding="utf-8") == render(everything)


def test_report_opens_with_one_summary_table_of_every_part(tmp_path: Path) -> None:
    text = render({"training": part("training", 1.0, 2.0), "serving": part("serving", 3.0, 3.0)})
    lines = text.splitlines()
    first_table = next(i for i, line in enumerate(lines) if line.startswith("|"))
    assert lines[first_table] == "| figure | value | baseline | ratio | goal | met? |"
    assert lines[first_table + 2] == "| training figure | 1.0 s | 2.0 s (base) | 0.500 | ≤ 1 | yes |"
    assert lines[first_table + 3] == "| serving figure | 3.0 s | 3.0 s (base) | 1.000 | ≤ 1 | yes |"
    assert lines.index("## Training (`python -m benchmarks.bench_training`)") > first_table
    assert "training (2026-01-01 00:00), serving (2026-01-01 00:00): measured by this command." in text
    assert "| training detail | 2.0 ms | — | — | — | — |" in text


def test_save_refuses_machine_paths_and_leaves_the_files(tmp_path: Path) -> None:
    results, report = tmp_path / "results.json", tmp_path / "BENCHMARKS.md"
    save("training", part("training", 1.0, 2.0), results, report)
    before = results.read_bytes(), report.read_bytes()
    bad = part("drift", 5.9, 60.0)
    bad["details"] = {"data": "/work/shared/data/it_service_tickets/tickets.csv"}
    with pytest.raises(ValueError, match="paths of this machine"):
        save("drift", bad, results, report)
    assert (results.read_bytes(), report.read_bytes()) == before


def test_quick_outputs_go_to_a_temp_folder_unless_named(tmp_path: Path) -> None:
    parser = common.argparse.ArgumentParser()
    common.output_arguments(parser)
    results, report = common.output_paths(parser.parse_args(["--quick"]))
    results.parent.rmdir()  # a fresh, empty temp folder
    assert results.parent != common.RESULTS.parent and report == results.with_name("BENCHMARKS.md")
    results, report = common.output_paths(parser.parse_args([]))
    assert (results, report) == (common.RESULTS, common.REPORT)
    results, report = common.output_paths(parser.parse_args(["--quick", "--results", str(tmp_path / "r.json")]))
    assert (results, report) == (tmp_path / "r.json", tmp_path / "BENCHMARKS.md")
