"""One model trained by the real pipeline for the modules that serve it, copied into each module's home.

Training (the CLI's `run` through kfp.local) costs about a minute on 2 cores; the modules that need it share one
run and each gets a copy of its state folder, so what one module changes (new versions, a moved alias, the
prediction log) is invisible to the others. The copies' MLflow store still names the template's artifact folder,
which nobody changes: new runs write their own subfolders.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="session")
def trained_home_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("trained-home")
    proc = subprocess.run(
        [sys.executable, "-m", "ticketflow.pipelines.cli", "--home", str(home), "run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return home


@pytest.fixture(scope="module")
def home(trained_home_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state folder with a trained champion (MLflow sqlite, ChromaDB), this module's own."""
    home = tmp_path_factory.mktemp("serving-home") / "home"
    shutil.copytree(trained_home_template, home, ignore=shutil.ignore_patterns("predictions.db*", "server-*.log"))
    return home
