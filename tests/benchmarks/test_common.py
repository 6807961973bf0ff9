"""Unit tests of benchmarks/common.py: the BENCHMARKS.md section writers, load measurement and facts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from benchmarks import common
from benchmarks.common import Load, measure, other_cores, write_section, write_unmarked

HEAD = "# ticketflow training benchmarks\n\n## Summary\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
SERVING = "<!-- serving:start -->\n## Serving benchmark\n\nold serving text\n\n<!-- serving:end -->"
DRIFT = "<!-- drift:start -->\n## Drift check\n\n| x |\n|---|\n| 9 |\n<!-- drift:end -->"
REPORT = f"{HEAD}\n{SERVING}\n\n{DRIFT}\n"


@pytest.fixture
def report(tmp_path: Path) -> Path:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(REPORT, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------- write_section


def test_write_section_replaces_only_its_own_section(report: Path) -> None:
    assert write_section(report, "serving", "## Serving benchmark\n\nnew figures\n\n")
    text = report.read_text(encoding="utf-8")
    new = "<!-- serving:start -->\n## Serving benchmark\n\nnew figures\n\n<!-- serving:end -->"
    assert text == REPORT.replace(SERVING, new)
    before, after = REPORT.split(SERVING)
    assert text.startswith(before) and text.endswith(after)  # the rest byte-identical
    assert "old serving text" not in text


def test_write_section_leaves_other_sections_byte_identical(report: Path) -> None:
    write_section(report, "drift", "## Drift check\n\nother figures\n")
    text = report.read_bytes()
    assert text.startswith(f"{HEAD}\n{SERVING}\n\n".encode())
    assert text.endswith(b"<!-- drift:start -->\n## Drift check\n\nother figures\n<!-- drift:end -->\n")


def test_write_section_keeps_odd_spacing_around_it(tmp_path: Path) -> None:
    before, after = "# head  \n\n\n\n", "  \n\n\ntrailing text without a line break"
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(f"{before}{SERVING}{after}", encoding="utf-8")
    write_section(path, "serving", "new\n")
    assert path.read_bytes() == f"{before}<!-- serving:start -->\nnew\n<!-- serving:end -->{after}".encode()


def test_write_section_is_idempotent(report: Path) -> None:
    write_section(report, "serving", "body\n")
    once = report.read_bytes()
    write_section(report, "serving", "body\n")
    assert report.read_bytes() == once


def test_write_section_adds_a_missing_final_line_break(report: Path) -> None:
    write_section(report, "drift", "no line break at the end")
    assert "no line break at the end\n<!-- drift:end -->" in report.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("existing", "expected_prefix"),
    [
        ("# title\n\ntext\n", "# title\n\ntext\n\n"),  # one blank line before the new section
        ("# title\n\ntext\n\n", "# title\n\ntext\n\n"),  # already a blank line: none added
        ("# title\n\ntext", "# title\n\ntext\n\n"),  # no final line break
        ("", ""),  # empty file: the section alone
    ],
)
def test_write_section_appends_when_absent(tmp_path: Path, existing: str, expected_prefix: str) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(existing, encoding="utf-8")
    assert write_section(path, "drift", "## Drift\n")
    assert path.read_text(encoding="utf-8") == expected_prefix + "<!-- drift:start -->\n## Drift\n<!-- drift:end -->\n"


def test_write_section_creates_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "new.md"
    assert write_section(path, "drift", "## Drift\n")
    assert path.read_text(encoding="utf-8") == "<!-- drift:start -->\n## Drift\n<!-- drift:end -->\n"


@pytest.mark.parametrize(
    "broken",
    [
        f"{HEAD}\n{SERVING}\n\n{SERVING}\n",  # twice
        f"{HEAD}\n<!-- serving:end -->\nx\n<!-- serving:start -->\n",  # out of order
        f"{HEAD}\n<!-- serving:start -->\nno end\n",  # end marker missing
    ],
)
def test_write_section_refuses_broken_markers_and_leaves_the_file(tmp_path: Path, broken: str) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(broken, encoding="utf-8")
    assert not write_section(path, "serving", "new\n")
    assert path.read_text(encoding="utf-8") == broken


def test_write_section_rejects_names_the_training_report_would_not_keep(report: Path) -> None:
    with pytest.raises(ValueError, match="section name"):
        write_section(report, "two words", "x\n")
    assert report.read_text(encoding="utf-8") == REPORT


# --------------------------------------------------------------------------------------------- write_unmarked


def test_write_unmarked_replaces_the_head_and_keeps_every_section_in_order(report: Path) -> None:
    kept = write_unmarked(report, "# new head\n")
    assert kept == ["serving", "drift"]
    assert report.read_text(encoding="utf-8") == f"# new head\n\n{SERVING}\n\n{DRIFT}\n"


def test_write_unmarked_then_write_section_round_trip(report: Path) -> None:
    write_unmarked(report, HEAD)
    assert report.read_text(encoding="utf-8") == REPORT
    write_section(report, "serving", "## Serving benchmark\n\nold serving text\n\n")
    assert report.read_text(encoding="utf-8") == REPORT


def test_write_unmarked_without_sections(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    assert write_unmarked(path, HEAD) == []
    assert path.read_text(encoding="utf-8") == HEAD


# --------------------------------------------------------------------------------------------- load


def test_load_defaults_and_other_cores_text() -> None:
    load = Load()
    assert (load.seconds, load.own_cores, load.other_cores) == (0.0, 0.0, None)
    assert other_cores(load) == "n/a"
    assert other_cores(Load(other_cores=0.126)) == "0.13"


def test_measure_times_an_idle_block() -> None:
    with measure() as load:
        time.sleep(0.1)
    assert 0.09 <= load.seconds < 5
    assert load.own_cores < 0.5  # sleeping costs no CPU
    if Path("/proc/stat").exists():
        assert load.other_cores is not None and load.other_cores >= 0


def test_measure_fills_the_load_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), measure() as load:
        time.sleep(0.02)
        raise RuntimeError("stage failed")
    assert load.seconds >= 0.015


def test_measure_counts_extra_pids_as_own_and_the_rest_as_others(monkeypatch: pytest.MonkeyPatch) -> None:
    # The machine was busy 10 CPU seconds during the block; the "server" process spent 4 of them.
    busy = iter([100.0, 110.0])
    server_cpu = iter([1.0, 5.0])
    monkeypatch.setattr(common, "_busy_cpu_seconds", lambda: next(busy))
    monkeypatch.setattr(common, "_pid_cpu_seconds", lambda pid: next(server_cpu))
    with measure(lambda: [12345]) as load:
        pass
    assert load.own_cores * load.seconds == pytest.approx(4.0, abs=0.05)
    assert load.other_cores * load.seconds == pytest.approx(6.0, abs=0.05)


def test_measure_without_proc_stat_leaves_other_cores_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "_busy_cpu_seconds", lambda: None)
    with measure() as load:
        pass
    assert load.other_cores is None


# --------------------------------------------------------------------------------------------- facts, tables


def test_machine_facts_rows_in_report_order() -> None:
    facts = common.machine_facts(
        ("pytest", "surely-not-installed-package"), settings={"threads set": "2"}, code={"digest": "abc"}
    )
    assert list(facts) == [
        "date",
        "cpu",
        "cores (os.cpu_count)",
        "threads set",
        "python",
        "pytest",
        "surely-not-installed-package",
        "digest",
        "git commit",
        "load average at start (1/5/15 min)",
    ]
    assert facts["pytest"] == pytest.__version__
    assert facts["surely-not-installed-package"] == "not installed"


def test_machine_facts_details_add_the_training_rows() -> None:
    facts = common.machine_facts((), details=True, settings={"threads set": "2"})
    assert list(facts) == [
        "date",
        "host",
        "os",
        "cpu",
        "cores (os.cpu_count)",
        "usable cores (sched_getaffinity)",
        "memory",
        "torch threads (default of this process)",
        "threads set",
        "python",
        "python executable",
        "git commit",
        "load average at start (1/5/15 min)",
    ]


def test_code_digests_cover_the_named_folders_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("b/z.py", "a/y.py", "a/notes.md", "c/x.py", "a/sub/deep.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    monkeypatch.setattr(common, "ROOT", tmp_path)
    before = common.code_digests(("b", "a"))
    assert list(before) == ["a/y.py", "b/z.py"]
    (tmp_path / "a" / "y.py").write_text("edited")
    (tmp_path / "b" / "new.py").write_text("new")
    assert common.changed_files(before, common.code_digests(("a", "b"))) == ["a/y.py", "b/new.py"]
    assert common.code_digest(before) != common.code_digest(common.code_digests(("a", "b")))


def test_markdown_table() -> None:
    assert common.markdown_table(["a", "b"], [[1, None], ["x", 2.5]]) == [
        "| a | b |",
        "|---|---|",
        "| 1 | None |",
        "| x | 2.5 |",
    ]
