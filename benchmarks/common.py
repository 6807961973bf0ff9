"""Helpers the benchmark scripts share: progress lines, machine load, facts, Markdown tables and BENCHMARKS.md.

`BENCHMARKS.md` is written by several scripts. `bench_training` owns the unmarked part (`write_unmarked`); every
other benchmark owns one marked section `<!-- name:start -->` … `<!-- name:end -->` (`write_section`). Each writer
leaves the others' parts byte-for-byte as they were.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_STARTED = time.perf_counter()
# One benchmark's marked section of a report: `<!-- name:start -->`, its text, `<!-- name:end -->`.
SECTION = re.compile(r"<!-- ([A-Za-z0-9_-]+):start -->.*?<!-- \1:end -->", re.DOTALL)
_SECTION_NAME = re.compile(r"[A-Za-z0-9_-]+")


def say(message: str) -> None:
    """Prints one progress line, prefixed with the seconds since the benchmark started.

    Args:
        message: The line to print.
    """
    print(f"[{time.perf_counter() - _STARTED:7.1f}s] {message}", flush=True)


def enter_repo(foreign_env: Sequence[str]) -> None:
    """Runs the rest of the benchmark from the repo root, importable, without settings that point elsewhere.

    Args:
        foreign_env: Environment variables to remove (they would point runs at another home, store or model).
    """
    os.chdir(ROOT)
    for name in foreign_env:
        os.environ.pop(name, None)


def work_folder(workdir: Path | None, prefix: str) -> tuple[Path, bool]:
    """The folder for a run's homes, logs and scratch files, created if needed.

    Args:
        workdir: The folder the user asked for, or None for a fresh temporary one.
        prefix: Name prefix of a temporary folder.

    Returns:
        The absolute folder, and whether to keep it afterwards (True when the user named it).
    """
    folder = (workdir or Path(tempfile.mkdtemp(prefix=prefix))).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder, workdir is not None


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


def _pid_cpu_seconds(pid: int) -> float:
    """CPU seconds of a live process (user + system), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds(extra_pids: Sequence[int] = ()) -> float:
    """CPU seconds of this process, its waited-for children and the live processes `extra_pids`."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system + sum(map(_pid_cpu_seconds, extra_pids))


@dataclass
class Load:
    """Wall time of a measured span, the cores the benchmark used and the cores other processes kept busy.

    Attributes:
        seconds: Wall time of the span.
        own_cores: CPU seconds of this process tree (and any extra processes counted as its own) per second.
        other_cores: Busy CPU seconds of every other process per second; None where /proc/stat is absent.
    """

    seconds: float = 0.0
    own_cores: float = 0.0
    other_cores: float | None = None


@contextlib.contextmanager
def measure(extra_pids: Callable[[], Sequence[int]] = tuple) -> Iterator[Load]:
    """Times a block and splits the machine's busy CPU time between the benchmark and other processes.

    Children's CPU time only counts once they have been waited for; live processes the benchmark started and
    has not waited for yet (a server) are counted through `extra_pids`.

    Args:
        extra_pids: Returns the live processes whose CPU counts as the benchmark's own, asked at the start and
            at the end of the block (a process gone by then counts 0). Default: none.

    Yields:
        The `Load`, filled in when the block ends.
    """
    load = Load()
    busy0, own0, t0 = _busy_cpu_seconds(), _own_cpu_seconds(extra_pids()), time.perf_counter()
    try:
        yield load
    finally:
        load.seconds = time.perf_counter() - t0
        spent = _own_cpu_seconds(extra_pids()) - own0
        load.own_cores = spent / max(load.seconds, 1e-9)
        busy1 = _busy_cpu_seconds()
        if busy0 is not None and busy1 is not None:
            load.other_cores = max(0.0, (busy1 - busy0 - spent) / max(load.seconds, 1e-9))


def other_cores(load: Load) -> str:
    """The cores other processes kept busy during `load`, as the reports print it ("n/a" when unknown).

    Args:
        load: A measured span.

    Returns:
        Two decimals, or "n/a".
    """
    return "n/a" if load.other_cores is None else f"{load.other_cores:.2f}"


# --------------------------------------------------------------------------------------------- facts


def package_version(name: str) -> str:
    """The installed version of a distribution.

    Args:
        name: Distribution name, as pip knows it ("scikit-learn").

    Returns:
        The version, or "not installed".
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return ""


def _memory() -> str:
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        return f"{kb / 1024 / 1024:.1f} GiB"
    return ""


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as the reports print them ("0.52 / 0.61 / 0.70")."""
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def machine_facts(
    packages: Sequence[str],
    *,
    details: bool = False,
    settings: Mapping[str, object] | None = None,
    code: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """The machine, software and code a run measures, in the order of the report's facts table.

    Rows: date, [host, os], cpu, cores, [usable cores, memory, torch's default thread count], `settings`,
    python, [python executable], one row per package, `code`, git commit, load average (bracketed rows only
    with `details`).

    Args:
        packages: Distributions whose installed versions to list, in this order.
        details: Add the host name, OS, usable cores, memory, torch's default thread count and the python
            executable (imports torch).
        settings: Rows placed after the machine rows, e.g. thread counts the benchmark sets.
        code: Rows placed before the git commit, e.g. a digest of the code the run executes.

    Returns:
        Fact name → value.
    """
    facts: dict[str, object] = {"date": dt.datetime.now().astimezone().isoformat(timespec="seconds")}
    if details:
        facts |= {"host": platform.node(), "os": platform.platform()}
    facts |= {"cpu": _cpu_model() or platform.processor() or "unknown", "cores (os.cpu_count)": os.cpu_count()}
    if details:
        import torch

        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "n/a"
        facts |= {
            "usable cores (sched_getaffinity)": usable,
            "memory": _memory() or "unknown",
            "torch threads (default of this process)": torch.get_num_threads(),
        }
    facts |= dict(settings or {})
    facts["python"] = platform.python_version()
    if details:
        facts["python executable"] = sys.executable
    facts |= {name: package_version(name) for name in packages}
    facts |= dict(code or {})
    dirty = _git("status", "--porcelain")
    facts["git commit"] = _git("rev-parse", "HEAD") + (" (work tree has uncommitted changes)" if dirty else "")
    facts["load average at start (1/5/15 min)"] = load_average()
    return facts


def code_digests(folders: Sequence[str]) -> dict[str, str]:
    """A sha256 per Python file of the code a run executes, to notice edits made while it runs.

    Args:
        folders: Folders below the repo root whose `*.py` files (not recursive) to digest, e.g. "components".

    Returns:
        Path relative to the repo root → the first 12 hex digits of its sha256, sorted by path.
    """
    paths = sorted(p for folder in folders for p in ROOT.glob(f"{folder}/*.py"))
    return {str(p.relative_to(ROOT)): hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in paths}


def code_digest(digests: Mapping[str, str]) -> str:
    """One short digest over every file's digest.

    Args:
        digests: The result of `code_digests`.

    Returns:
        16 hex digits.
    """
    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()[:16]


def changed_files(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """The files added, removed or edited between two `code_digests` results, sorted."""
    return sorted(f for f in {*before, *after} if before.get(f) != after.get(f))


# --------------------------------------------------------------------------------------------- report


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A Markdown table, one line per item.

    Args:
        header: Column titles.
        rows: Cells, each printed with `str`.

    Returns:
        The header line, the separator line and one line per row.
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def section_markers(name: str) -> tuple[str, str]:
    """The start and end markers of a named section.

    Args:
        name: Letters, digits, `_` and `-` only (what `write_unmarked` recognises).

    Returns:
        `<!-- name:start -->` and `<!-- name:end -->`.

    Raises:
        ValueError: For any other name.
    """
    if not _SECTION_NAME.fullmatch(name):
        raise ValueError(f"section name {name!r}: use letters, digits, '_' and '-' only")
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def section_block(name: str, body: str) -> str:
    """A named section: its start marker, a line break, `body` (final line break added if missing), its end marker.

    Args:
        name: The section's name in its markers.
        body: Markdown between the markers.

    Returns:
        The block, without a line break after the end marker.
    """
    start, end = section_markers(name)
    if not body.endswith("\n"):
        body += "\n"
    return f"{start}\n{body}{end}"


def write_section(path: Path, name: str, body: str) -> bool:
    """Writes a benchmark's own marked section of a report and leaves the rest of the file byte-for-byte.

    The section (`section_block`) replaces the markers and what is between them, or is appended after a blank
    line when the file has no such markers; a missing file is created.

    Args:
        path: The report, e.g. `ROOT / "BENCHMARKS.md"`.
        name: The section's name in its markers.
        body: Markdown between the markers.

    Returns:
        True when written; False (and the file untouched) when the markers are present but not exactly once
        each, start before end.
    """
    start, end = section_markers(name)
    block = section_block(name, body)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    starts, ends = text.count(start), text.count(end)
    if starts == ends == 0:
        glue = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        path.write_text(f"{text}{glue}{block}\n", encoding="utf-8")
        return True
    a, b = text.find(start), text.find(end)
    if starts != 1 or ends != 1 or b < a:
        return False
    path.write_text(text[:a] + block + text[b + len(end) :], encoding="utf-8")
    return True


def write_unmarked(path: Path, text: str) -> list[str]:
    """Overwrites a report with `text`, keeping the marked sections other benchmarks wrote into it.

    The kept sections follow `text` in their old order, each after a line break and followed by one.

    Args:
        path: The report, e.g. `ROOT / "BENCHMARKS.md"`.
        text: The new unmarked part.

    Returns:
        The names of the sections kept.
    """
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    kept = list(SECTION.finditer(old))
    path.write_text(text + "".join(f"\n{m.group(0)}\n" for m in kept), encoding="utf-8")
    return [m.group(1) for m in kept]
