"""The Makefile hands file paths to the CLI as single arguments, spaces and all (`make -n`: nothing runs)."""

from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest

from tests.conftest import ROOT


def cli_args(*make_args: str) -> list[str]:
    """The argument list of the `ticketflow.pipelines.cli` command a make target would run."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    dry_run = subprocess.run(
        ["make", "-n", *make_args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    line = next(line for line in dry_run.splitlines() if "-m ticketflow.pipelines.cli" in line)
    return shlex.split(line)


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
