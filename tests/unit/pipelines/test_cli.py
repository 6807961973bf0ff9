"""The `ticketflow` command line without training: parsing, help texts, exit codes, the task-log plumbing."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from ticketflow.components.config import TicketflowConfig
from ticketflow.pipelines import cli
from ticketflow.pipelines.local_runner import StepProgress, TaskLog

COMMANDS = ("run", "predict", "promote", "rollback", "champion", "drift", "feedback", "review-queue", "serve")
# The least each command needs to parse.
REQUIRED = {
    "predict": ["--data", "in.csv", "--out", "out.csv"],
    "promote": ["--version", "2"],
    "feedback": ["--ticket-id", "r-0", "--label", "category=Network"],
}


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_is_there() -> None:
    assert set(subcommands(cli.build_parser())) == set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_shared_options_work_before_and_after_the_subcommand(command: str) -> None:
    parser = cli.build_parser()
    rest = REQUIRED.get(command, [])
    before = parser.parse_args(["--home", "h1", "-v", command, *rest])
    after = parser.parse_args([command, *rest, "--home", "h1", "--verbose"])
    neither = parser.parse_args([command, *rest])
    assert (before.home, before.verbose) == (after.home, after.verbose) == ("h1", True)
    assert (neither.home, neither.verbose) == (None, False)
    # Given only before the subcommand, the subcommand's copy of the option must not reset it.
    assert parser.parse_args(["--home", "h2", command, *rest]).home == "h2"
    assert parser.parse_args(["--home", "h2", command, *rest, "--home", "h3"]).home == "h3"


def test_every_option_has_help_that_shows_its_default() -> None:
    parser = cli.build_parser()
    for name, command in {"ticketflow": parser, **subcommands(parser)}.items():
        for action in command._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.option_strings[0]} has no help"
            assert "default" in action.help or action.required, f"{name} {action.option_strings[0]}: {action.help}"
        command.format_help()  # every %(default)s placeholder formats


def test_help_states_the_real_defaults() -> None:
    commands = subcommands(cli.build_parser())
    run_help = " ".join(commands["run"].format_help().split())
    assert "(default: data/sample_tickets.csv" in run_help and "(default: auto-detect)" in run_help
    assert "(default: 10)" in run_help and "(default: 0.2)" in run_help and "(default: 42)" in run_help
    assert "$TICKETFLOW_HOME, else .ticketflow" in run_help
    assert "(default: 50)" in " ".join(commands["review-queue"].format_help().split())


def test_review_queue_lists_label_issues_on_request() -> None:
    parser = cli.build_parser()
    plain = parser.parse_args(["review-queue"])
    assert (plain.label_issues, plain.target) == (False, None)
    audit = parser.parse_args(["review-queue", "--label-issues", "--target", "category", "--limit", "5", "--json"])
    assert (audit.label_issues, audit.target, audit.limit, audit.json) == (True, "category", 5, True)


def test_serve_delegates_to_the_predictor_cli() -> None:
    pytest.importorskip("ticketflow.serving.cli", reason="serving/cli.py (another engineer's) is not there yet")
    serve = subcommands(cli.build_parser())["serve"]
    help_text = serve.format_help()
    for option in ("--port", "--http_port", "--host", "--model-name", "--model-alias", "--reload-interval"):
        assert option in help_text
    args = cli.build_parser().parse_args(["serve", "--http_port", "9001", "--home", "h"])
    assert (args.port, args.home, args.func) == (9001, "h", cli.cmd_serve)


def test_serve_sets_the_home_for_the_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    homes_seen: list[str] = []

    def fake_run_server(args: argparse.Namespace) -> int:
        homes_seen.append(os.environ["TICKETFLOW_HOME"])
        return 0

    monkeypatch.setenv("TICKETFLOW_HOME", "elsewhere")  # restored after the test; cmd_serve overwrites it
    monkeypatch.setattr(cli, "run_server", fake_run_server)
    assert cli.main(["serve", "--port", "9002", "--home", str(tmp_path)]) == 0
    assert homes_seen == [str(tmp_path.resolve())]


def test_a_missing_data_file_is_one_error_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("TICKETFLOW_HOME", str(tmp_path))  # restored after the test; `run` sets it
    assert cli.main(["run", "--data", str(tmp_path / "missing.csv")]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == f"error: DATA file not found: {tmp_path / 'missing.csv'}\n"


def test_tuning_trials_reach_the_pipeline_and_a_bad_count_is_one_error_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = tmp_path / "tickets.csv"
    data.write_text("text,category\nvpn down,Network\n")
    started: list[dict] = []

    def no_pipeline(pipeline, params, runs, verbose):  # the pipeline itself runs in the integration tests
        started.append(params)
        raise RuntimeError("not run here")

    monkeypatch.setenv("TICKETFLOW_HOME", str(tmp_path))  # restored after the test; `run` sets it
    monkeypatch.setattr(cli, "run_pipeline", no_pipeline)
    assert cli.main(["run", "--data", str(data), "--tuning-trials", "3"]) == 1
    assert cli.main(["run", "--data", str(data)]) == 1
    assert [p["tuning_trials"] for p in started] == [3, TicketflowConfig().tuning_trials]
    capsys.readouterr()
    assert cli.main(["run", "--data", str(data), "--tuning-trials", "0"]) == 1
    out, err = capsys.readouterr()
    assert len(started) == 2 and out == ""
    assert err.startswith("error: ") and "tuning_trials" in err and "greater than or equal to 1" in err


def test_exit_codes_of_the_console_script(tmp_path: Path) -> None:
    def ticketflow(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "ticketflow.pipelines.cli", *args]
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)

    usage = ticketflow("run", "--no-such-option")
    assert usage.returncode == 2 and "unrecognized arguments: --no-such-option" in usage.stderr
    assert ticketflow("--home", str(tmp_path), "frobnicate").returncode == 2
    failure = ticketflow("--home", str(tmp_path), "run", "--data", str(tmp_path / "missing.csv"))
    assert failure.returncode == 1 and failure.stdout == ""
    assert failure.stderr.startswith("error: DATA file not found") and "Traceback" not in failure.stderr
    assert ticketflow("--help").returncode == 0


def test_task_log_moves_into_the_run_folder_and_feeds_progress(tmp_path: Path) -> None:
    terminal = io.StringIO()
    copy = io.StringIO()
    task_log = TaskLog(tmp_path, copy_to=copy, progress=StepProgress(terminal))
    run = "ticketflow-training-2026-01-02-03-04-05-123456"
    print("\x1b[0mRunning pipeline", file=task_log)
    print("12:00:00.000 - INFO - Executing task \x1b[96m'ingest-tickets'\x1b[0m", file=task_log)
    task_log.write(f'    "uri": "{tmp_path}/{run}/ingest-tickets/report",')  # a line in two writes
    task_log.write("\n    Traceback (most recent call last):\n        boom\n    ValueError: bad file\n")
    print("12:00:01.000 - ERROR - Task \x1b[96m'ingest-tickets'\x1b[0m finished with status FAILURE", file=task_log)
    task_log.close()
    assert task_log.path == tmp_path / run / "tasks.log" and task_log.run_dir == tmp_path / run
    assert not list(tmp_path.glob(".tasks-*"))
    text = task_log.path.read_text()
    assert text.startswith("Running pipeline\n") and "Executing task 'ingest-tickets'" in text and "\x1b" not in text
    assert copy.getvalue() == text  # a StringIO is no terminal: the copy has no colours either
    assert "ingest-tickets" in terminal.getvalue() and "failure" in terminal.getvalue()
    assert task_log.failed_task_tail() == [
        f'"uri": "{tmp_path}/{run}/ingest-tickets/report",',
        "Traceback (most recent call last):",
        "    boom",
        "ValueError: bad file",
    ]
