"""The Makefile: arguments reach the installed `ticketflow` command intact, `clean` spares the state, `reset` asks.

Most checks dry-run make (`make -n`: nothing runs). `clean` and `reset` run for real, on a copy of the Makefile in
a temporary folder, so the working tree's own state and caches are never touched.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")

CLI = ".venv/bin/ticketflow"


def dry_run(*make_args: str) -> str:
    """What `make -n` would run in the repository."""
    return subprocess.run(
        ["make", "-n", *make_args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout


def cli_args(*make_args: str, subcommand: str | None = None) -> list[str]:
    """The argument list of the installed `ticketflow` command a make target would run (the last such line)."""
    subcommand = subcommand or make_args[0]
    lines = [shlex.split(line) for line in dry_run(*make_args).splitlines() if line.startswith(CLI)]
    matching = [args for args in lines if args[1:2] == [subcommand]]
    assert matching, f"make -n {' '.join(make_args)} runs no `{CLI} {subcommand}`"
    return matching[-1]


def make(folder: Path, *make_args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    """Runs make in `folder` (which holds a copy of the Makefile) and returns the finished process."""
    return subprocess.run(["make", "-C", str(folder), *make_args], text=True, timeout=60, check=False, **kwargs)


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A temporary folder with the Makefile and a state folder worth keeping."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    state = tmp_path / ".ticketflow"
    (state / "runs" / "__pycache__").mkdir(parents=True)
    (state / "mlflow.db").write_text("models", encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("make_args", "expected"),
    [
        (("run", "DATA=exports/my tickets.csv"), ["--data", "exports/my tickets.csv"]),
        (
            ("predict", "DATA=new tickets.csv", "OUT=scored tickets.csv"),
            ["--data", "new tickets.csv", "--out", "scored tickets.csv"],
        ),
    ],
)
def test_paths_with_spaces_stay_one_argument(make_args: tuple[str, ...], expected: list[str]) -> None:
    args = cli_args(*make_args)
    start = args.index(expected[0])
    assert args[start : start + len(expected)] == expected


def test_run_without_data_passes_no_data_flag() -> None:
    assert "--data" not in cli_args("run")


def test_serve_runs_the_serve_subcommand_with_host_and_port() -> None:
    assert cli_args("serve", "HOST=0.0.0.0", "PORT=9090") == [CLI, "serve", "--host", "0.0.0.0", "--port", "9090"]
    first = cli_args("serve", subcommand="champion")  # trains first when there is no champion
    assert first[:2] == [CLI, "champion"]
    assert first[first.index("||") :][-3:] == [CLI, "run;", "}"]


@pytest.mark.parametrize(
    ("make_args", "expected"),
    [(("promote", "VERSION=3"), [CLI, "promote", "--version", "3"]), (("rollback",), [CLI, "rollback"])],
)
def test_champion_moves_use_the_installed_command(make_args: tuple[str, ...], expected: list[str]) -> None:
    assert cli_args(*make_args) == expected


def test_no_target_runs_the_cli_module_directly() -> None:
    assert "ticketflow.pipelines.cli" not in (ROOT / "Makefile").read_text(encoding="utf-8")


def test_install_uses_the_locks_with_plain_pip() -> None:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = text[text.index("$(VENV)/.installed:") : text.index("\ninstall:")]
    assert "uv " not in recipe  # uv only regenerates the locks (make lock)
    assert recipe.index("torch==2.13.0") < recipe.index("-r requirements.txt -r requirements-dev.txt")
    assert recipe.index("-r requirements.txt") < recipe.index("--no-deps --no-build-isolation -e .")
    assert recipe.index("-e .") < recipe.index("$(PIP) check")


def test_clean_dry_run_never_names_the_state_folder() -> None:
    assert ".ticketflow" not in dry_run("clean")


def test_clean_removes_build_outputs_and_keeps_the_state(project_copy: Path) -> None:
    outputs = ["build/lib/x.py", "dist/t.whl", "ticketflow.egg-info/PKG-INFO", "local_outputs/run/a", ".ruff_cache/x"]
    outputs += [".pytest_cache/v", "components/__pycache__/m.pyc", "tests/serving/__pycache__/t.pyc"]
    kept = ["components/m.py", ".venv/lib/__pycache__/v.pyc"]
    for name in outputs + kept:
        (project_copy / name).parent.mkdir(parents=True, exist_ok=True)
        (project_copy / name).write_text("x", encoding="utf-8")
    assert make(project_copy, "clean", capture_output=True).returncode == 0
    assert [name for name in outputs if (project_copy / name).exists()] == []
    assert not (project_copy / "build").exists()
    assert not (project_copy / "components" / "__pycache__").exists()
    assert all((project_copy / name).exists() for name in kept)
    assert (project_copy / ".ticketflow" / "mlflow.db").read_text(encoding="utf-8") == "models"
    assert (project_copy / ".ticketflow" / "runs" / "__pycache__").is_dir()


def test_reset_refuses_without_a_terminal_to_ask(project_copy: Path) -> None:
    result = make(project_copy, "reset", stdin=subprocess.DEVNULL, capture_output=True)
    assert result.returncode != 0
    assert "FORCE=1" in result.stderr
    assert (project_copy / ".ticketflow" / "mlflow.db").is_file()


def test_reset_with_force_deletes_the_state(project_copy: Path) -> None:
    result = make(project_copy, "reset", "FORCE=1", stdin=subprocess.DEVNULL, capture_output=True)
    assert result.returncode == 0, result.stderr
    assert not (project_copy / ".ticketflow").exists()
    assert (project_copy / "Makefile").is_file()


@pytest.mark.parametrize(("answer", "deleted"), [("y", True), ("n", False), ("", False)])
def test_reset_asks_on_a_terminal(project_copy: Path, answer: str, deleted: bool) -> None:
    controller, terminal = os.openpty()
    try:
        os.write(controller, f"{answer}\n".encode())  # the terminal keeps the line until `read` takes it
        result = make(project_copy, "reset", stdin=terminal, capture_output=True)
    finally:
        os.close(terminal)
        os.close(controller)
    assert result.returncode == 0, result.stderr
    assert "[y/N]" in result.stderr
    assert (project_copy / ".ticketflow").exists() is not deleted


def test_reset_without_state_has_nothing_to_do(tmp_path: Path) -> None:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    result = make(tmp_path, "reset", stdin=subprocess.DEVNULL, capture_output=True)
    assert result.returncode == 0
    assert "nothing to reset" in result.stdout
