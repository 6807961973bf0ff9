"""What the benchmarks share: progress lines, timing, machine load, and the results file they write.

Each benchmark stores its part of `benchmarks/results.json` ("training", "quality", "serving", "encoding", "drift",
"store") and then renders `BENCHMARKS.md` from the whole file: one summary table (figure, value, baseline, ratio,
goal, met?), each part's notes and further figures (or a table of its own), and the runs the figures come from.
Neither pyperf nor pytest-benchmark is installed, so timing is `time.perf_counter` around each call and the
figures are medians (`statistics.median`).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results.json"
REPORT = ROOT / "BENCHMARKS.md"
PARTS = ("training", "quality", "serving", "encoding", "drift", "store")  # their order in the report
# Folders of this machine that a report must not name: they mean nothing on another machine.
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|tmp|home|Users|root|var|mnt|opt|private|srv|scratch)/[^\s`'\")|]*")
_STARTED = time.perf_counter()


def say(message: str) -> None:
    """Prints one progress line, prefixed with the seconds since the benchmark started."""
    print(f"[{time.perf_counter() - _STARTED:7.1f}s] {message}", flush=True)


def interleaved(
    arms: Mapping[str, Callable[[int], object]], rounds: int, *, pause: float = 0.0, warm: bool = False
) -> dict[str, list[float]]:
    """Seconds per call of each arm, round by round, rotating which arm goes first.

    Arms measured in the same rounds see the same moments of the machine's load, so their ratio holds when
    that load changes (a shared machine); the rotation keeps any order effect out of the ratio.

    Args:
        arms: Name → a function of the round number (0 … rounds - 1) to time.
        rounds: Calls per arm.
        pause: Seconds to sleep, untimed, before each timed call (sparse traffic: thread pools asleep).
        warm: Call each arm once, untimed, with `rounds + round` right before its timed call, so that each
            side runs warm as in back-to-back use.

    Returns:
        Name → seconds of each timed call.
    """
    names = list(arms)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        first = i % len(names)
        for name in names[first:] + names[:first]:
            if warm:
                arms[name](rounds + i)
            if pause:
                time.sleep(pause)
            started = time.perf_counter()
            arms[name](i)
            seconds[name].append(time.perf_counter() - started)
    return seconds


def median(values: Sequence[float]) -> float:
    """The median (NaN for no values)."""
    return float(statistics.median(values)) if len(values) else float("nan")


def p99(values: Sequence[float]) -> float:
    """The 99th percentile by linear interpolation, as numpy's default (one value: itself; none: NaN)."""
    if len(values) < 2:
        return float(max(values, default=float("nan")))
    return statistics.quantiles(values, n=100, method="inclusive")[98]


# --------------------------------------------------------------------------------------------- machine load


def _busy_cpu_seconds() -> float | None:
    """CPU seconds all cores spent busy since boot (None where /proc/stat is absent)."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds(pids: Sequence[int]) -> float:
    """CPU seconds of this process, its waited-for children and the live processes `pids`."""
    total = sum(os.times()[:4])
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


@dataclass
class Load:
    """Wall time of a measured span and the cores other processes kept busy meanwhile (None: unknown)."""

    seconds: float = 0.0
    other_cores: float | None = None


@contextlib.contextmanager
def measure(pids: Callable[[], Sequence[int]] = tuple) -> Iterator[Load]:
    """Times a block and the cores that processes other than the benchmark kept busy during it.

    Args:
        pids: Returns live processes whose CPU counts as the benchmark's own (a server it started).

    Yields:
        The `Load`, filled in when the block ends.
    """
    load = Load()
    busy, own, started = _busy_cpu_seconds(), _own_cpu_seconds(pids()), time.perf_counter()
    try:
        yield load
    finally:
        load.seconds = time.perf_counter() - started
        spent = _own_cpu_seconds(pids()) - own
        busy_now = _busy_cpu_seconds()
        if busy is not None and busy_now is not None:
            load.other_cores = round(max(0.0, (busy_now - busy - spent) / max(load.seconds, 1e-9)), 2)


# --------------------------------------------------------------------------------------------- results


def shown(path: Path) -> str:
    """A path as a report names it: relative to the repo, `../…` beside it, else the file name alone."""
    # Absolute but not resolved: ../shared is often a symlink (CI links it beside the clone), and resolving it
    # would take the path out of the repo's neighbourhood.
    path = Path(os.path.abspath(path))
    for base, prefix in ((ROOT, ""), (ROOT.parent, "../")):
        with contextlib.suppress(ValueError):
            return prefix + str(path.relative_to(base))
    return path.name


def figure(
    name: str,
    value: float,
    unit: str = "",
    *,
    baseline: float | None = None,
    baseline_label: str = "",
    goal: str = "",
    met: bool | None = None,
    ratio: float | None = None,
) -> dict[str, object]:
    """One row of a figures table.

    Args:
        name: What was measured.
        value: The figure (a median unless the name says otherwise).
        unit: Its unit ("" for scores, "s", "ms", "tickets/s").
        baseline: The figure it is compared with, measured in the same run (or a fixed limit).
        baseline_label: What the baseline is.
        goal: The goal, in words ("≥ baseline", "≥ 0.9", "< 60 s").
        met: Whether the goal is met; None when there is no goal.
        ratio: value / baseline unless given.

    Returns:
        The row.
    """
    if ratio is None and baseline:
        ratio = value / baseline
    return {
        "figure": name,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_label": baseline_label,
        "ratio": ratio,
        "goal": goal,
        "met": met,
    }


def merged_rows(path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """Each well-formed row of a ticket CSV with its text merged as the server merges it (subject, body, tags).

    Args:
        path: A CSV with `subject`, `body` and optionally `tags` columns (the bundled sample's shape).

    Yields:
        `(text, row)` for rows with a non-empty text; rows with more fields than the header are skipped.
    """
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if None in row:  # more fields than the header
                continue
            tags = (row.get("tags") or "").replace(";", " ").replace(",", " ")
            text = " ".join(" ".join((row.get("subject") or "", row.get("body") or "", tags)).split())
            if text:
                yield text, row


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.system()


def run_facts(command: str, quick: bool, packages: Sequence[str]) -> dict[str, object]:
    """Where and when a benchmark ran: command, start time, commit, machine and package versions.

    Args:
        command: The command line, from the repo root (`python -m benchmarks.bench_drift`).
        quick: Whether tiny inputs were measured (figures not representative).
        packages: Distributions whose versions to record.

    Returns:
        The facts; `finished` and `other_cores` are added by the benchmark.
    """

    def git(*args: str) -> str:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        return ""

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return {
        "command": command,
        "quick": quick,
        "source": "quick mode: tiny inputs, checks the writers only" if quick else "measured by this command",
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": git("rev-parse", "--short", "HEAD") + (" (uncommitted changes)" if git("status", "-s") else ""),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {cpu_model()}",
        "python": platform.python_version(),
        "packages": {name: installed(name) for name in packages},
    }


def output_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds `--quick`, `--results` and `--report` to a benchmark's parser."""
    parser.add_argument("--quick", action="store_true", help="tiny inputs in a temp folder: checks the writers")
    parser.add_argument("--results", type=Path, help="results JSON (default benchmarks/results.json; quick: temp)")
    parser.add_argument("--report", type=Path, help="Markdown report (default BENCHMARKS.md; quick: beside JSON)")


def output_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """The results file and the report: the repo's, or with `--quick` a fresh temp folder's unless named."""
    if args.results is None:
        args.results = Path(tempfile.mkdtemp(prefix="ticketflow-bench-")) / "results.json" if args.quick else RESULTS
    if args.report is None:
        args.report = REPORT if args.results.resolve() == RESULTS else args.results.with_name("BENCHMARKS.md")
    return args.results, args.report


def machine_paths(text: str) -> list[str]:
    """The absolute paths of this machine in a text (its work, temp and home folders), which a report must not name."""
    found = MACHINE_PATH.findall(text)
    found += [p for p in {str(ROOT), str(Path.home()), tempfile.gettempdir()} if len(p) > 1 and p in text]
    return sorted(set(found))


def save(part: str, data: Mapping[str, object], results: Path = RESULTS, report: Path = REPORT) -> None:
    """Stores one benchmark's part of the results file and renders the report from the whole file.

    Args:
        part: One of `PARTS` ("training", "quality", "serving", "encoding", "drift" or "store").
        data: `run` (see `run_facts`), `summary` and `figures` (lists of `figure` rows), `notes` (Markdown
            lines) and `details` (any JSON); optionally `title` (the section's heading) and `table` (`columns`
            and `rows` of Markdown cells, shown after the notes).
        results: The results file; other parts in it are kept.
        report: The Markdown report, rewritten.

    Raises:
        ValueError: The results or the report would name an absolute path of this machine.
    """
    everything = json.loads(results.read_text(encoding="utf-8")) if results.exists() else {}
    everything[part] = data
    order = {name: i for i, name in enumerate(PARTS)}
    everything = {name: everything[name] for name in sorted(everything, key=lambda n: (order.get(n, 99), n))}
    text = json.dumps(everything, indent=1, ensure_ascii=False) + "\n"
    markdown = render(everything)
    if bad := machine_paths(text + markdown):
        raise ValueError(f"the results would name paths of this machine: {bad}")
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(text, encoding="utf-8")
    report.write_text(markdown, encoding="utf-8")


# --------------------------------------------------------------------------------------------- report


def _number(value: float | None, unit: str = "") -> str:
    if value is None or value != value:
        return "—"
    text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4f}" if not unit else f"{value:.1f}"
    return f"{text} {unit}".strip()


def _rows(figures: Sequence[Mapping[str, object]]) -> list[str]:
    lines = ["| figure | value | baseline | ratio | goal | met? |", "|---|---|---|---|---|---|"]
    for f in figures:
        baseline = _number(f["baseline"], f["unit"]) + (f" ({f['baseline_label']})" if f["baseline_label"] else "")
        ratio = "—" if f["ratio"] is None else f"{f['ratio']:.3f}" if f["ratio"] < 10 else f"{f['ratio']:.0f}"
        met = {True: "yes", False: "**no**", None: "—"}[f["met"]]
        lines.append(
            f"| {f['figure']} | {_number(f['value'], f['unit'])} | {baseline} | {ratio} | {f['goal'] or '—'} | {met} |"
        )
    return lines


def _table(table: Mapping[str, Sequence[object]]) -> list[str]:
    """A part's own table: `columns` (names) and `rows` (lists of Markdown cells, one per column)."""
    lines = ["| " + " | ".join(map(str, table["columns"])) + " |", "|" + "---|" * len(table["columns"])]
    return lines + ["| " + " | ".join(map(str, row)) + " |" for row in table["rows"]]


def _sources(runs: Mapping[str, Mapping[str, object]]) -> str:
    """One sentence per source of figures, naming the parts it holds and when they started."""
    by_source: dict[str, list[str]] = {}
    for name, run in runs.items():
        by_source.setdefault(str(run["source"]), []).append(f"{name} ({str(run['started'])[:16].replace('T', ' ')})")
    return " ".join(f"{', '.join(parts)}: {source}." for source, parts in by_source.items())


def render(everything: Mapping[str, Mapping[str, object]]) -> str:
    """BENCHMARKS.md from the results: the summary table first, then each part's notes and figures, then runs."""
    runs = {name: part["run"] for name, part in everything.items()}
    quick = any(run["quick"] for run in runs.values())
    out = [
        "# ticketflow benchmarks" + (" — QUICK MODE (tiny inputs; do not quote)" if quick else ""),
        "",
        "Written by `make bench` (`benchmarks/bench_training.py`, `bench_quality.py`, `bench_serving.py`, "
        "`bench_encoding.py`, `bench_drift.py`, `bench_store.py`, ≈ 1 h 20 min on 2 cores) from "
        "`benchmarks/results.json`, which holds every figure below and more detail. Values are medians; each ratio "
        "compares two figures measured in the same run on the same machine, so ratios carry over to another CPU and "
        "absolute times do not.",
        "",
        "**Where the figures come from**: " + _sources(runs) + " Commands, commits and machine: *Runs*, at the end.",
        "",
        *_rows([f for part in everything.values() for f in part["summary"]]),
        "",
    ]
    for name, part in everything.items():
        title = part.get("title") or name.capitalize()
        out += [f"## {title} (`{part['run']['command']}`)", "", *part.get("notes", [])]
        if part.get("figures"):
            out += ["", *_rows(part["figures"])]
        if part.get("table"):
            out += ["", *_table(part["table"])]
        out += [""]
    out += ["## Runs", "", "| part | command | started | finished | commit | machine | other processes' cores |"]
    out += ["|---|---|---|---|---|---|---|"]
    for name, run in runs.items():
        out.append(
            f"| {name} | `{run['command']}` | {run['started']} | {run.get('finished', '—')} | {run['git_commit']} | "
            f"{run['machine']} | {'—' if run.get('other_cores') is None else format(run['other_cores'], '.2f')} |"
        )
    return "\n".join(out) + "\n"
