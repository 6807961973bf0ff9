"""The predictor's command line (`ticketflow serve`, `python -m ticketflow.serving`): strict, documented, cheap."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, seed_mlflow_store
from ticketflow.serving.cli import add_serve_arguments, build_serve_parser

SERVE_ENV = ("HOST", "PORT", "TICKETFLOW_MODEL_NAME", "TICKETFLOW_MODEL_ALIAS", "TICKETFLOW_MODEL_DIR")


@pytest.fixture(autouse=True)
def no_serve_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The defaults below are the built-in ones: the caller's environment must not set them."""
    for name in SERVE_ENV:
        monkeypatch.delenv(name, raising=False)


def parse(argv: list[str]) -> argparse.Namespace:
    return build_serve_parser().parse_args(argv)


def exit_code_of(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exited:
        parse(argv)
    return exited.value.code


def test_defaults() -> None:
    args = parse([])
    assert vars(args) == {
        "host": "127.0.0.1",
        "port": 8080,
        "model_name": "ticket-classifier",
        "model_alias": "champion",
        "model_dir": None,
        "reload_interval": None,  # the configuration's, when the server starts
    }


@pytest.mark.parametrize(
    "argv",
    [["--port", "9000"], ["--http-port", "9000"], ["--http_port", "9000"], ["--port=9000"], ["--http_port=9000"]],
)
def test_port_and_its_aliases(argv: list[str]) -> None:
    assert parse(argv).port == 9000


def test_every_option_and_its_underscore_alias() -> None:
    dashed = parse(
        ["--host", "0.0.0.0", "--model-name", "m", "--model-alias", "a", "--model-dir", "/d", "--reload-interval", "0"]
    )
    underscored = parse(
        ["--host", "0.0.0.0", "--model_name", "m", "--model_alias", "a", "--model_dir", "/d", "--reload_interval", "0"]
    )
    assert vars(dashed) == vars(underscored)
    assert (dashed.host, dashed.model_name, dashed.model_alias, dashed.model_dir) == ("0.0.0.0", "m", "a", "/d")
    assert dashed.reload_interval == 0.0


@pytest.mark.parametrize(
    "argv",
    [
        ["--bogus"],
        ["--http-prot", "9000"],  # a typo
        ["--grpc_port", "9001"],  # kserve's, which the predictor never reads
        ["--workers", "2"],
        ["--hos", "0.0.0.0"],  # an abbreviation: no option is taken by a prefix
        ["--model", "x"],
        ["extra"],
        ["--port", "eighty"],
    ],
)
def test_unknown_options_abbreviations_and_bad_values_exit_2(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    assert exit_code_of(argv) == 2
    assert "error:" in capsys.readouterr().err


def test_help_lists_only_our_options_with_their_defaults(capsys: pytest.CaptureFixture) -> None:
    from ticketflow.serving.cli import _import_kserve_quietly

    assert exit_code_of(["--help"]) == 0
    text = capsys.readouterr().out
    ours = {option for action in build_serve_parser()._actions for option in action.option_strings}
    kserve_options = {option for action in _import_kserve_quietly().parser._actions for option in action.option_strings}
    shown = set(text.replace(",", " ").replace("[", " ").replace("]", " ").split())
    assert {"--grpc_port", "--workers"} <= kserve_options
    assert (kserve_options - ours) & shown == set()
    for option in ("--host", "--port", "--model-name", "--model-alias", "--model-dir", "--reload-interval"):
        assert option in shown
    flat = " ".join(text.split())
    for default in ("127.0.0.1", "8080", "ticket-classifier", "champion", "none, serve the registry alias", "30"):
        assert f"(default: {default}" in flat
    assert flat.count("(default: ") == 6  # every option's help shows its default


def test_defaults_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("PORT", "9100")
    monkeypatch.setenv("TICKETFLOW_MODEL_NAME", "ticket-router")
    monkeypatch.setenv("TICKETFLOW_MODEL_ALIAS", "challenger")
    monkeypatch.setenv("TICKETFLOW_MODEL_DIR", "/mnt/models")
    args = parse([])
    assert (args.host, args.port, args.model_name, args.model_alias, args.model_dir) == (
        "0.0.0.0",
        9100,
        "ticket-router",
        "challenger",
        "/mnt/models",
    )
    assert parse(["--port", "1"]).port == 1
    exit_code_of(["--help"])
    assert "(default: 9100" in capsys.readouterr().out


def test_a_bad_port_in_the_environment_fails_serve_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "tcp://10.0.0.1:8080")  # what a Service named `port` would inject
    parser = build_serve_parser()  # building the parser (every `ticketflow` command does) still works
    assert parser.parse_args(["--port", "8081"]).port == 8081
    assert exit_code_of([]) == 2


def test_serve_arguments_on_a_subcommand() -> None:
    """How the top-level `ticketflow` command uses them: `ticketflow serve ...`."""
    parser = argparse.ArgumentParser(prog="ticketflow")
    commands = parser.add_subparsers(dest="command", required=True)
    add_serve_arguments(commands.add_parser("serve", allow_abbrev=False))
    args = parser.parse_args(["serve", "--http_port", "7000", "--model-name", "m"])
    assert (args.command, args.port, args.model_name, args.host) == ("serve", 7000, "m", "127.0.0.1")
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["serve", "--http-prot", "7000"])
    assert exited.value.code == 2


def run_module(argv: list[str], home: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (*SERVE_ENV, "MLFLOW_TRACKING_URI")}
    env["TICKETFLOW_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "ticketflow.serving", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_module_refuses_an_unknown_option_before_loading_anything(tmp_path: Path) -> None:
    proc = run_module(["--http-port", "9000", "--grpc_port", "9001"], tmp_path, timeout=60)
    assert proc.returncode == 2
    assert "unrecognized arguments: --grpc_port 9001" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_nothing_to_serve_keeps_the_server_up_not_ready_with_the_reason(tmp_path: Path, empty_mlflow_db: Path) -> None:
    """No champion is no reason to exit (a crash loop on a cluster): live, not ready, and it says why."""
    seed_mlflow_store(tmp_path, empty_mlflow_db)  # an empty registry, without waiting for MLflow's migrations
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in (*SERVE_ENV, "MLFLOW_TRACKING_URI")}
    env["TICKETFLOW_HOME"] = str(tmp_path)
    argv = ["--port", str(port), "--model-name", "no-such-model", "--reload-interval", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ticketflow.serving", *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ready = None
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            try:
                ready = requests.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5)
            except requests.ConnectionError:
                ready = None
            if ready is not None and "no_champion" in ready.text:
                break
            time.sleep(0.3)
        assert proc.poll() is None, "the server exited"
        assert requests.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=5).status_code == 200
    finally:
        proc.terminate()
        output = proc.communicate(timeout=60)[0]
    assert ready is not None and ready.status_code == 503, output[-2000:]
    assert "no_champion: NoChampionError: models:/no-such-model@champion" in ready.json()["error"]
    assert "is not ready (no_champion)" in output and "Traceback" not in output


def test_importing_the_cli_and_building_its_parser_stay_light() -> None:
    """`ticketflow --help` builds this parser: it must not load kserve (which parses sys.argv) or the model stack."""
    heavy = ["kserve", "torch", "mlflow", "fastapi", "ticketflow.serving.server", "ticketflow.serving.predictor"]
    code = (
        "import json, sys\n"
        "from ticketflow.serving.cli import build_serve_parser\n"
        "build_serve_parser().parse_args(['--port', '1'])\n"
        f"print(json.dumps([name for name in {heavy!r} if name in sys.modules]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
