"""Runs a pipeline through kfp.local quietly: the task logs go to the run's `tasks.log`, not to stdout.

kfp.local prints every task's inputs, outputs and log lines through `print()` and through a logging handler it
binds to `sys.stdout` at call time: several hundred lines per run. `run_pipeline` points `sys.stdout` (and the
root logger) at a `TaskLog` for the duration of the run. The `TaskLog` writes the lines, without colour codes, to
`<pipeline root>/<run>/tasks.log`, the folder kfp.local creates for the run's artifacts; with `verbose` it copies
them to stderr, and on a terminal it shows one line per step instead.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
TASK_STARTED = re.compile(r"Executing task '([^']+)'")
TASK_FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
TASK_CACHED = re.compile(r"Task (\S+) cache hit")
TASK_SKIPPED = re.compile(r"Skipping (?:conditional )?task (\S+)")
# kfp.local names a run `<pipeline>-<%Y-%m-%d-%H-%M-%S-%f>` and prints artifact URIs under `<pipeline root>/<run>/`.
RUN_NAME = r"[^/\s\"']+-\d{4}(?:-\d{2}){5}-\d{6}"
# SubprocessRunner warns for every task whose base_image does not contain "python". Ours is the project's own
# image, and locally the steps run in this very environment, which holds the same pinned packages.
NON_PYTHON_IMAGE_WARNING = "You may be attemping to run a task that uses custom or non-Python base image"
# kfp.local warns for every task that states CPU or memory requests and limits. Those size the pods on a cluster;
# locally every step is a process of this machine. Other settings it ignores still warn.
POD_RESOURCES_WARNING = (
    r"Task '[^']+': settings \[(?:'(?:cpu|memory)_(?:request|limit)'(?:, )?)+\] have no effect in the current "
    r"local runner"
)
TAIL_LINES = 15


class PipelineFailedError(RuntimeError):
    """A pipeline run through kfp.local ended with a failed task; the message says where its log is."""


@dataclass(frozen=True)
class PipelineRun:
    """What a finished local run left behind.

    Attributes:
        output: The pipeline's return value (a JSON string for ticketflow's pipelines).
        run_dir: The run's folder under the pipeline root: artifacts per task, and `tasks.log`.
        tasks_log: The task logs kfp.local printed during the run.
    """

    output: str
    run_dir: Path
    tasks_log: Path


class StepProgress:
    """One line per step on a terminal: the step's name while it runs, then its status and duration."""

    def __init__(self, stream: TextIO) -> None:
        """Writes to `stream`, a terminal.

        Args:
            stream: Where the progress lines go (stderr).
        """
        self.stream = stream
        self.running: dict[str, float] = {}
        self.pending_line = False

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def started(self, task: str) -> None:
        """A step started: show its name, without a newline, until it finishes."""
        self.end_pending_line()
        self.running[task] = time.monotonic()
        self._write(f"  {task:<30} …")
        self.pending_line = True

    def finished(self, task: str, status: str) -> None:
        """A step ended: overwrite its line with the status and the time it took."""
        seconds = time.monotonic() - self.running.pop(task, time.monotonic())
        prefix = "\r\x1b[K" if self.pending_line else ""
        self.pending_line = False
        self._write(f"{prefix}  {task:<30} {status.lower():<8} {seconds:6.1f} s\n")

    def note(self, task: str, what: str) -> None:
        """A step that did not run (cached, skipped)."""
        self.end_pending_line()
        self._write(f"  {task:<30} {what}\n")

    def end_pending_line(self) -> None:
        """Ends a step's line that is still open, e.g. when the run stops in the middle."""
        if self.pending_line:
            self._write("\n")
            self.pending_line = False


class TaskLog(io.TextIOBase):
    """A text stream standing in for `sys.stdout` during a run: writes each line to the run's `tasks.log`.

    The run's folder is known only once kfp.local prints a path inside it (the first task's executor input), so
    the log starts as a hidden file in the pipeline root and moves into the folder then.
    """

    def __init__(self, pipeline_root: Path, copy_to: TextIO | None = None, progress: StepProgress | None = None):
        """Opens the log.

        Args:
            pipeline_root: kfp.local's pipeline root, where it creates a folder per run.
            copy_to: Also write every line here (stderr with `--verbose`), with colours when it is a terminal.
            progress: Shows the steps as they start and finish.
        """
        super().__init__()
        self.pipeline_root = pipeline_root
        self.copy_to = copy_to
        self.copy_colours = bool(copy_to is not None and copy_to.isatty())
        self.progress = progress
        self.run_dir: Path | None = None
        self.path = pipeline_root / f".tasks-{os.getpid()}-{time.time_ns()}.log"
        self._run_folder = re.compile(re.escape(str(pipeline_root)) + f"/({RUN_NAME})/")
        self._file = self.path.open("w", encoding="utf-8")
        self._partial = ""

    @property
    def encoding(self) -> str:
        """The log's encoding."""
        return "utf-8"

    def writable(self) -> bool:
        """A TaskLog is written to."""
        return True

    def write(self, text: str) -> int:
        """Writes text; lines are handled once complete.

        Args:
            text: Any part of one or more lines.

        Returns:
            The number of characters taken.
        """
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self._line(line)
        return len(text)

    def flush(self) -> None:
        """Flushes the log file (so `tail -f` follows it) and the copy."""
        if not self._file.closed:
            self._file.flush()
        if self.copy_to is not None:
            self.copy_to.flush()

    def _line(self, line: str) -> None:
        plain = ANSI_ESCAPE.sub("", line)
        self._file.write(plain + "\n")
        if self.copy_to is not None:
            self.copy_to.write((line if self.copy_colours else plain) + "\n")
        if self.run_dir is None and (match := self._run_folder.search(plain)):
            self.move_into(self.pipeline_root / match.group(1))
        if self.progress is not None:
            self._show_progress(plain)

    def _show_progress(self, plain: str) -> None:
        if match := TASK_STARTED.search(plain):
            self.progress.started(match.group(1))
        elif match := TASK_FINISHED.search(plain):
            self.progress.finished(match.group(1), match.group(2))
        elif match := TASK_CACHED.search(plain):
            self.progress.note(match.group(1), "cached")
        elif match := TASK_SKIPPED.search(plain):
            self.progress.note(match.group(1), "skipped")

    def move_into(self, run_dir: Path) -> None:
        """Moves the log to `<run_dir>/tasks.log` and goes on writing there.

        Args:
            run_dir: The run's folder (created when it does not exist yet).
        """
        run_dir.mkdir(parents=True, exist_ok=True)
        self._file.close()
        target = run_dir / "tasks.log"
        os.replace(self.path, target)
        self.run_dir, self.path = run_dir, target
        self._file = target.open("a", encoding="utf-8")

    def close(self) -> None:
        """Writes an unfinished last line and closes the file."""
        if self._partial:
            self._line(self._partial)
            self._partial = ""
        if self.progress is not None:
            self.progress.end_pending_line()
        self._file.close()
        super().close()

    def failed_task_tail(self, count: int = TAIL_LINES) -> list[str]:
        """The last lines the failed task printed (its traceback ends with the cause), else the log's last lines.

        Args:
            count: Most lines returned.

        Returns:
            Lines without kfp.local's indentation, blank ones left out.
        """
        lines = self.path.read_text(encoding="utf-8").splitlines()
        failures = [i for i, line in enumerate(lines) if (m := TASK_FINISHED.search(line)) and m.group(2) != "SUCCESS"]
        if failures:
            end = failures[-1]
            task = TASK_FINISHED.search(lines[end]).group(1)
            starts = [i for i, line in enumerate(lines[:end]) if f"Executing task '{task}'" in line]
            lines = lines[starts[-1] + 1 if starts else 0 : end]
        # kfp.local indents a task's own lines by four spaces; keep the indentation inside them (tracebacks).
        kept = [line.removeprefix("    ").rstrip() for line in lines if line.strip() and "Streamed logs:" not in line]
        return kept[-count:]


def init_local_runner(pipeline_root: Path, runner: object | None = None) -> None:
    """Points a kfp.local runner at `pipeline_root`.

    Args:
        pipeline_root: Folder kfp.local creates a folder per run in (created when missing).
        runner: A kfp.local runner; None is the SubprocessRunner in this environment (no venv per task), the
            embedded default. `make smoke-containers` passes a DockerRunner (`ticketflow.pipelines.containers`).
    """
    from kfp import local

    pipeline_root.mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore", message=re.escape(NON_PYTHON_IMAGE_WARNING), category=RuntimeWarning)
    warnings.filterwarnings("ignore", message=POD_RESOURCES_WARNING, category=UserWarning)
    local.init(runner=runner or local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))


@contextlib.contextmanager
def _root_logging_to(stream: TextIO) -> Iterator[None]:
    # kfp.local logs a few lines (workspace clean-up, skipped branches) outside its own stdout handler: keep them
    # with the rest of the run's log rather than on the terminal.
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def run_pipeline(
    pipeline, arguments: dict[str, object], pipeline_root: Path, verbose: bool = False, runner: object | None = None
) -> PipelineRun:
    """Runs a pipeline through kfp.local with its task logs in `<pipeline_root>/<run>/tasks.log`.

    Args:
        pipeline: A `@dsl.pipeline` function returning a string.
        arguments: The pipeline's parameters.
        pipeline_root: kfp.local's pipeline root (`<home>/runs`).
        verbose: Also stream the task logs to stderr.
        runner: The kfp.local runner; None is the embedded default's SubprocessRunner (`init_local_runner`).

    Returns:
        The pipeline's output and where the run's artifacts and log are.

    Raises:
        PipelineFailedError: A task failed; the message names the task log and quotes the failed task's last lines.
    """
    init_local_runner(pipeline_root, runner)
    progress = StepProgress(sys.stderr) if sys.stderr.isatty() and not verbose else None
    task_log = TaskLog(pipeline_root, copy_to=sys.stderr if verbose else None, progress=progress)
    started = datetime.now()
    failure: RuntimeError | None = None
    try:
        with contextlib.redirect_stdout(task_log), _root_logging_to(task_log):
            output = pipeline(**arguments).output
    except RuntimeError as exc:  # kfp.local raises it when a task fails
        failure = exc
    finally:
        if task_log.run_dir is None:  # the run stopped before any task printed a path inside its folder
            task_log.move_into(pipeline_root / f"{pipeline.name}-{started:%Y-%m-%d-%H-%M-%S-%f}")
        task_log.close()
    if failure is not None:
        message = ANSI_ESCAPE.sub("", str(failure))
        tail = "\n".join(f"    {line}" for line in task_log.failed_task_tail())
        raise PipelineFailedError(f"{message}\nThe task log is {task_log.path}; it ends with:\n{tail}") from failure
    return PipelineRun(output=output, run_dir=task_log.run_dir, tasks_log=task_log.path)
