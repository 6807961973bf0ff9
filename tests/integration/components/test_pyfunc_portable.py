"""The registered pyfunc loads and predicts where the locked packages are installed but ticketflow is not.

That is how a model server outside this repository (MLflow's own `mlflow models serve`, a plain KServe MLflow
runtime) meets the model: the pickled `TicketModel` refers to `ticketflow.components.*`, so the code must
travel with the model (`code_paths`), not come from an install of the project.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.conftest import ROOT
from tests.integration.components.test_register import (  # noqa: F401 - `cfg` and `data` are fixtures
    Fixture,
    cfg,
    data,
    train_and_register,
)
from ticketflow.components.config import TicketflowConfig
from ticketflow.components.prepare import TEXT
from ticketflow.components.register import PYFUNC_PACKAGES

TICKETS = ["My laptop screen stays black after the update", "I was charged twice for last month's invoice"]

# Runs in the fresh interpreter; input on stdin, answer as the last line of stdout. ChromaDB cannot be imported
# there: the model classifies from the neighbour index it carries, so no vector store is needed to predict.
LOAD_AND_PREDICT = """
import json, sys

sys.modules["chromadb"] = None  # `import chromadb` now raises ImportError

import mlflow
import pandas as pd

request = json.loads(sys.stdin.read())
mlflow.set_tracking_uri(request["tracking_uri"])
model = mlflow.pyfunc.load_model(request["model_uri"])
answer = model.predict(pd.DataFrame({request["text_column"]: request["tickets"]}))
print(json.dumps({
    "predictions": answer.to_dict(orient="list"),
    "model_code": sys.modules["ticketflow.components.model"].__file__,
    "modules": sorted(name for name, module in sys.modules.items() if module is not None),
}))
"""


@pytest.fixture
def bare_python(tmp_path: Path) -> Path:
    """A venv that sees this environment's installed packages but not the editable ticketflow.

    A path line in a `.pth` file is added to sys.path without the `.pth` files in that folder being run, so
    the editable install's finder (started by `__editable__.ticketflow-*.pth`) never loads there.
    """
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    query = [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
    site_packages = Path(subprocess.run(query, check=True, capture_output=True, text=True).stdout.strip())
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site_packages / "locked_packages.pth").write_text("".join(f"{path}\n" for path in ours))
    return python


def run_bare(python: Path, cwd: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(python), *args], input=stdin, cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_registered_model_predicts_without_ticketflow_installed_or_chromadb(
    data: Fixture,  # noqa: F811 - the fixture imported above
    cfg: TicketflowConfig,  # noqa: F811 - the fixture imported above
    bare_python: Path,
    tmp_path: Path,
) -> None:
    # One hyperparameter candidate, two folds, few trees: the test is about the package, not the model's quality.
    quick = cfg.model_copy(update={"sgd_alphas": (1e-4,), "booster_iterations": 20, "cv_folds": 2})
    registration, _ = train_and_register(data, quick)
    workdir = tmp_path / "elsewhere"  # not the repo root, so nothing of ours is on sys.path by accident
    workdir.mkdir()

    probe = run_bare(bare_python, workdir, "-c", "import ticketflow")
    assert probe.returncode != 0 and "No module named 'ticketflow'" in probe.stderr, probe.stderr[-2000:]

    request = {
        "tracking_uri": quick.tracking_uri,
        "model_uri": f"models:/{registration.model_name}/{registration.model_version}",
        "text_column": TEXT,
        "tickets": TICKETS,
    }
    proc = run_bare(bare_python, workdir, "-c", LOAD_AND_PREDICT, stdin=json.dumps(request))
    assert proc.returncode == 0, proc.stderr[-4000:]
    answer = json.loads(proc.stdout.strip().splitlines()[-1])

    assert not Path(answer["model_code"]).resolve().is_relative_to(ROOT), answer["model_code"]
    predictions = answer["predictions"]
    for target in data.mapping.label_columns:
        trained_classes = set(data.train[target].astype(str))
        assert len(predictions[f"predicted_{target}"]) == len(TICKETS)
        assert set(predictions[f"predicted_{target}"]) <= trained_classes, target
    assert len(predictions["needs_review"]) == len(TICKETS)
    assert "chromadb" not in answer["modules"]


def _distribution(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _module_level_imports(module: str) -> set[str]:
    """Modules imported at the top of one `ticketflow.components` module (what loading the pyfunc imports)."""
    source = (ROOT / "components" / f"{module}.py").read_text(encoding="utf-8")
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module != "__future__":
            names.add(node.module)
    return names


def test_pinned_requirements_cover_what_the_staged_code_imports() -> None:
    # The portability test above runs with this environment's packages; a server that installs only the
    # pyfunc's requirements has nothing else. So every package the unpickling imports must be pinned or
    # come with a pinned one.
    todo, seen, third_party = ["register"], set(), set()
    while todo:
        module = todo.pop()
        seen.add(module)
        for name in _module_level_imports(module):
            if name.startswith("ticketflow.components."):
                todo += [name.rsplit(".", 1)[1]] if name.rsplit(".", 1)[1] not in seen else []
            elif name.split(".")[0] not in sys.stdlib_module_names:
                third_party.add(name.split(".")[0])
    provided, queue = set(), [_distribution(name) for name in PYFUNC_PACKAGES]
    while queue:
        dist = queue.pop()
        if dist in provided:
            continue
        provided.add(dist)
        for line in metadata.requires(dist) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                queue.append(_distribution(requirement.name))
    owners = metadata.packages_distributions()
    missing = {m: owners.get(m) for m in third_party if not {_distribution(d) for d in owners.get(m, [])} & provided}
    assert "config" in seen and missing == {}, f"add to PYFUNC_PACKAGES: {missing}"
