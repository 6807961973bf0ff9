"""The label audit end to end: the session's training run (kfp.local) flags training tickets, logs them to its
MLflow run and report; `ticketflow review-queue --label-issues` lists the champion's; a correction of one goes
through `ticketflow feedback` into the next training's data (`assemble_retraining_data`).

Real parts: the session's one pipeline run (`trained_run`), its sqlite MLflow store and artifacts, the SQLite
feedback store, the CLI in this process.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.conftest import seed_mlflow_store
from tests.integration.conftest import TrainedRun, copy_trained_home
from ticketflow.components.audit import ARTIFACT_COLUMNS, read_label_issues
from ticketflow.components.config import TicketflowConfig
from ticketflow.monitoring.feedback import FeedbackStore
from ticketflow.monitoring.retraining import assemble_retraining_data
from ticketflow.pipelines.cli import main as cli_main

MODEL = "ticket-classifier"


@pytest.fixture(scope="module")
def home(trained_run: TrainedRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's copy of the trained home: the feedback written here stays here."""
    return copy_trained_home(trained_run.home, tmp_path_factory, "audit-home")


@pytest.fixture
def cli(capsys: pytest.CaptureFixture) -> Callable[..., subprocess.CompletedProcess]:
    """`ticketflow --home HOME ...` in this process: its exit code and output."""

    def run(home: Path, *args: str) -> subprocess.CompletedProcess:
        argv = ["--home", str(home), *args]
        capsys.readouterr()
        try:
            code = cli_main(argv)
        except SystemExit as exited:
            code = exited.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(argv, code, out, err)

    return run


@pytest.fixture(scope="module")
def logged_issues(trained_run: TrainedRun) -> pd.DataFrame:
    """The label issues logged with the session's training run, read straight from its MLflow run."""
    uri = f"sqlite:///{trained_run.home / 'mlflow.db'}"
    local = mlflow.artifacts.download_artifacts(
        run_id=trained_run.summary["run_id"], artifact_path="label_issues/label_issues.csv", tracking_uri=uri
    )
    return read_label_issues(local)


def test_the_training_run_logs_its_label_issues_with_counts_and_reports_them(
    trained_run: TrainedRun, logged_issues: pd.DataFrame
) -> None:
    assert list(logged_issues.columns) == list(ARTIFACT_COLUMNS)
    assert len(logged_issues) > 0, "the sample carries label noise: the audit should flag some of it"
    client = MlflowClient(tracking_uri=f"sqlite:///{trained_run.home / 'mlflow.db'}")
    metrics = client.get_run(trained_run.summary["run_id"]).data.metrics
    for target in ("category", "priority"):
        assert metrics[f"{target}.label_issues"] == (logged_issues["target"] == target).sum()
    # Each flagged ticket is a training ticket, labelled as the artifact says it was given.
    reference = pd.read_parquet(
        mlflow.artifacts.download_artifacts(
            run_id=trained_run.summary["run_id"],
            artifact_path="reference/train.parquet",
            tracking_uri=f"sqlite:///{trained_run.home / 'mlflow.db'}",
        )
    ).set_index("ticket_id")
    for row in logged_issues.to_dict("records"):
        assert reference.loc[row["ticket_id"], row["target"]] == row["given_label"] != row["suggested_label"]
    html = Path(trained_run.summary["report_html"]).read_text()
    assert html.count("Probably mislabelled training tickets") == 2
    category = int(metrics["category.label_issues"])
    assert f"{category} training tickets flagged" in html


def test_review_queue_lists_the_champions_label_issues_most_disputed_first(
    home: Path, cli, logged_issues: pd.DataFrame
) -> None:
    listed = cli(home, "review-queue", "--label-issues", "--json", "--limit", "5")
    assert listed.returncode == 0, listed.stderr
    answer = json.loads(listed.stdout)
    assert answer["model_version"] == "1" and answer["total"] == len(logged_issues)
    assert answer["count"] == min(5, len(logged_issues))
    given = [t["given_label_probability"] for t in answer["tickets"]]
    assert given == sorted(given)  # the least probable given label first
    first = answer["tickets"][0]
    assert set(first) == set(ARTIFACT_COLUMNS)

    table = cli(home, "review-queue", "--label-issues", "--target", "category", "--limit", "3")
    assert table.returncode == 0, table.stderr
    assert table.stderr == ""  # no download progress bar
    categories = logged_issues[logged_issues["target"] == "category"].sort_values("rank")
    top = categories.iloc[0]
    assert top["ticket_id"] in table.stdout
    assert f"{top['given_label']} -> {top['suggested_label']} ({top['confidence']:.2f})" in table.stdout
    assert "priority" not in table.stdout.split("\n", 2)[2]  # rows of the category only (after the header)
    assert f"ticketflow feedback --ticket-id {top['ticket_id']} --label category={top['suggested_label']}" in (
        table.stdout
    )

    unknown = cli(home, "review-queue", "--label-issues", "--target", "team")
    assert unknown.returncode == 1 and "has no target 'team'; its targets: category, priority" in unknown.stderr
    stray = cli(home, "review-queue", "--target", "category")
    assert stray.returncode == 1 and "--target goes with --label-issues" in stray.stderr


def test_a_correction_of_a_listed_training_ticket_reaches_the_next_trainings_data(
    home: Path, cli, logged_issues: pd.DataFrame, tmp_path: Path
) -> None:
    issue = logged_issues[logged_issues["target"] == "category"].sort_values("rank").iloc[0]
    ticket_id, corrected = issue["ticket_id"], issue["suggested_label"]
    done = cli(home, "feedback", "--ticket-id", ticket_id, "--label", f"category={corrected}")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["labels"] == {"category": corrected}
    assert record["predicted"] == {"category": corrected}  # the audit's suggestion stands for the prediction
    assert record["model_version"] == "1" and record["served"] is False and record["text"] == issue["text"]
    stored = FeedbackStore(f"sqlite:///{home / 'predictions.db'}").read()
    assert stored.loc[stored["ticket_id"] == ticket_id, "confidence"].tolist() == [pytest.approx(issue["confidence"])]
    # A target the audit did not flag for this ticket is not a prediction it can correct.
    flagged = set(logged_issues.loc[logged_issues["ticket_id"] == ticket_id, "target"])
    if "priority" not in flagged:
        refused = cli(home, "feedback", "--ticket-id", ticket_id, "--label", "priority=high")
        assert refused.returncode == 1 and "has no prediction for 'priority'" in refused.stderr
    unknown = cli(home, "feedback", "--ticket-id", "TCK-nope", "--label", "category=Network")
    assert unknown.returncode == 1 and "nor among the known tickets" in unknown.stderr

    cfg = TicketflowConfig(home=str(home))
    counts = assemble_retraining_data(cfg, str(tmp_path / "retrain.parquet"))
    data = pd.read_parquet(tmp_path / "retrain.parquet")
    assert counts["corrected"] == 1 and counts["total"] == counts["reference"]  # replaced, not added
    row = data[data["ticket_id"] == ticket_id]
    assert len(row) == 1
    assert row["category"].item() == corrected != issue["given_label"]
    reference = pd.read_parquet(
        mlflow.artifacts.download_artifacts(
            run_id=json.loads(cli(home, "review-queue", "--label-issues", "--json").stdout)["run_id"],
            artifact_path="reference/train.parquet",
            tracking_uri=cfg.tracking_uri,
        )
    ).set_index("ticket_id")
    # Its other target comes from its own training row (the prediction log never saw it).
    assert row["priority"].item() == reference.loc[ticket_id, "priority"]
    assert row["text"].item() == reference.loc[ticket_id, "text"]


def test_without_a_champion_or_without_label_issues_the_cli_says_so(tmp_path: Path, cli, empty_mlflow_db: Path) -> None:
    empty = tmp_path / "empty"
    nothing = cli(empty, "review-queue", "--label-issues")
    assert nothing.returncode == 1
    assert "error: no champion for ticket-classifier" in nothing.stderr and "Traceback" not in nothing.stderr
    assert not (empty / "mlflow.db").exists()  # asking did not create a store

    old = tmp_path / "old"
    seed_mlflow_store(old, empty_mlflow_db)
    client = MlflowClient(tracking_uri=f"sqlite:///{old / 'mlflow.db'}")
    run = client.create_run(client.create_experiment("before-the-audit", artifact_location=str(old / "artifacts")))
    client.create_registered_model(MODEL)
    version = client.create_model_version(MODEL, source=str(old / "artifacts" / "model"), run_id=run.info.run_id)
    client.set_registered_model_alias(MODEL, "champion", version.version)
    before = cli(old, "review-queue", "--label-issues")
    assert before.returncode == 1 and "Traceback" not in before.stderr
    assert "has no label issues: it was registered before the label audit existed" in before.stderr
