"""One model trained by the real pipeline for the whole session, copied into each module's home.

Training (the CLI's `run` through kfp.local) costs one to three minutes on 2 cores; the modules that need a
trained home share one run and each gets a copy of its state folder, so what one module changes (new versions, a
moved alias, the prediction log) is invisible to the others. test_training_local.py checks that run's own output
(its summary, its task log, what it registered); test_drift_local.py and the serving modules start from it. The
copies' MLflow store still names the template's artifact folder, which nobody changes: new runs write their own
subfolders.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT


@dataclass(frozen=True)
class TrainedRun:
    """The session's one `ticketflow run` on the bundled sample, in a fresh home.

    Attributes:
        home: Its state folder; a template: copy it (`copy_trained_home`), never change it.
        proc: The finished CLI process, its stdout and stderr as the command printed them.
        commit: The checkout's HEAD when the run started (the run records it; commits may follow during a session).
    """

    home: Path
    proc: subprocess.CompletedProcess
    commit: str

    @property
    def summary(self) -> dict:
        """The JSON line the run printed last."""
        return json.loads(self.proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    home = tmp_path_factory.mktemp("trained-home")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    proc = subprocess.run(
        [sys.executable, "-m", "ticketflow.pipelines.cli", "--home", str(home), "run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return TrainedRun(home, proc, commit)


@pytest.fixture(scope="session")
def trained_home_template(trained_run: TrainedRun) -> Path:
    return trained_run.home


def copy_trained_home(template: Path, tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A copy of the trained home of one module's own (no prediction log, no server logs)."""
    home = tmp_path_factory.mktemp(name) / "home"
    shutil.copytree(template, home, ignore=shutil.ignore_patterns("predictions.db*", "server-*.log"))
    return home


@pytest.fixture(scope="module")
def home(trained_home_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state folder with a trained champion (MLflow sqlite, ChromaDB), this module's own."""
    return copy_trained_home(trained_home_template, tmp_path_factory, "serving-home")
