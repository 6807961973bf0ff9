"""The drift loop through kfp.local: check served traffic, retrain only when it drifted, gate the result.

Real parts: the CLI, kfp.local (dsl.If, nested pipelines, an exit handler), MLflow, ChromaDB, the predictor
answering in-process and logging to the prediction log, Evidently.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from tests.conftest import ROOT
from tests.integration.conftest import TrainedRun, copy_trained_home
from ticketflow.components.config import TicketflowConfig
from ticketflow.monitoring.request_log import PredictionLog
from ticketflow.pipelines.compile_yaml import compile_to
from ticketflow.pipelines.drift import drift_pipeline
from ticketflow.serving.predictor import TicketBatch, TicketClassifier


def run_cli_process(home: Path, *args: str, prediction_log: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TICKETFLOW_PREDICTION_LOG"}
    if prediction_log:
        env["TICKETFLOW_PREDICTION_LOG"] = prediction_log  # as `make drift` reads it
    proc = subprocess.run(
        [sys.executable, "-m", "ticketflow.pipelines.cli", "--home", str(home), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def run_cli(home: Path, *args: str, prediction_log: str = "") -> dict:
    return json.loads(run_cli_process(home, *args, prediction_log=prediction_log).stdout.strip().splitlines()[-1])


def replay(home: Path, traffic: list[tuple[list[str], str]], prediction_log: str = "") -> None:
    """The champion answers each (texts, request id prefix) in turn, in batches of 32, logging every answer."""
    cfg = TicketflowConfig(home=str(home), prediction_log_uri=prediction_log)
    log = PredictionLog(cfg.prediction_log)
    model = TicketClassifier("ticket-classifier", cfg, request_log=log)
    model.load()
    for texts, prefix in traffic:
        for start in range(0, len(texts), 32):
            model.answer(model.loaded, TicketBatch(texts[start : start + 32], f"{prefix}-{start}", "v1"))
    log.close()


@pytest.fixture(scope="module")
def home(trained_run: TrainedRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session's trained home (tests/integration/conftest.py): a champion on the bundled sample."""
    assert trained_run.summary["champion"] is True
    return copy_trained_home(trained_run.home, tmp_path_factory, "drift-home")


def test_too_little_traffic_gives_not_enough_data_and_no_retrain(home: Path) -> None:
    replay(home, [(["printer jammed on floor two", "vpn drops every hour"] * 10, "few")])
    # -v after the subcommand: the task logs go to stderr as well as to the run's tasks.log, never to stdout.
    proc = run_cli_process(home, "drift", "--window-records", "20", "-v")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(proc.stdout.strip().splitlines()) - 1 <= 15 and "Executing task" not in proc.stdout
    assert proc.stdout.startswith("ticketflow drift check: not enough data")
    tasks_log = Path(summary["tasks_log"])
    assert tasks_log.parent == Path(summary["artifacts"]) and tasks_log.parent.parent == home / "runs"
    for text in (proc.stderr, tasks_log.read_text()):
        assert "Executing task 'check-for-drift'" in text and "Skipping conditional task" in text
        assert "Executing task 'assemble-retraining-data'" not in text
    assert "non-Python base image" not in proc.stderr
    assert summary["drift_detected"] is False and summary["enough_data"] is False
    assert "not enough data" in summary["reason"]
    assert summary["retrained"] is False and summary["champion_changed"] is False
    assert summary["window"]["tickets"] == 20


def test_shifted_traffic_is_detected_and_retrains_behind_the_gate(
    home: Path, customer_support_csv: Path, postgres_url: str
) -> None:
    # The predictor logs to PostgreSQL and the drift run reads it back from there, as on a cluster.
    source = pd.read_csv(customer_support_csv)
    german = source[source["language"] == "de"].head(150)
    old = ["printer jammed on floor two"] * 40  # answered first: outside the window
    shifted = (german["subject"].fillna("") + " " + german["body"].fillna("")).tolist()
    replay(home, [(old, "old"), (shifted, "de")], prediction_log=postgres_url)
    assert len(PredictionLog(postgres_url)) == 190
    summary = run_cli(home, "drift", "--window-records", "150", prediction_log=postgres_url)
    assert summary["drift_detected"] is True, summary["scores"]
    tasks_log = Path(summary["tasks_log"]).read_text()  # the nested training pipeline logs into the same run's log
    assert (
        "Executing task 'assemble-retraining-data'" in tasks_log and "Executing task 'register-classifier'" in tasks_log
    )
    assert summary["enough_data"] is True and summary["window"]["tickets"] == 150
    assert {"descriptors", "prediction", "embedding", "confidence"} == set(summary["scores"])
    assert summary["scores"]["embedding"]["drifted"] is True
    assert summary["queues"] and all(
        {"queue", "share", "reference_share", "drifted"} <= set(q) for q in summary["queues"]
    )
    assert summary["retrained"] is True  # the nested training pipeline ran and registered a version
    report = Path(summary["report_html"])
    assert report.suffix == ".html" and report.parent == home / "reports"
    assert report.read_bytes() == Path(summary["report_artifact"]).read_bytes()
    assert "drift" in report.read_text().lower() and "<html" in report.read_text().lower()
    assert isinstance(summary["champion_changed"], bool)
    metrics = (home / "metrics" / "drift.prom").read_text()
    assert "ticketflow_drift_detected 1.0" in metrics and 'ticketflow_drift_score{signal="embedding"}' in metrics
    assert "ticketflow_drift_last_check_timestamp_seconds" in metrics
    assert "Executing task 'count-retrain-run'" in tasks_log  # the retraining's exit task counted the run
    retrain_runs = (home / "metrics" / "retrain.prom").read_text()
    assert 'ticketflow_retrain_runs_total{result="succeeded"} 1.0' in retrain_runs
    assert 'ticketflow_retrain_runs_total{result="failed"} 0.0' in retrain_runs


def test_drift_pipeline_compiles_with_caching_off_and_a_retrain_branch(tmp_path: Path) -> None:
    path = tmp_path / "drift.yaml"
    compile_to(drift_pipeline, str(path))
    spec = json_format.ParseDict(next(yaml.safe_load_all(path.read_text())), pipeline_spec_pb2.PipelineSpec())
    tasks = spec.root.dag.tasks
    assert tasks["check-for-drift"].caching_options.enable_cache is False
    branch = next(t for t in tasks.values() if t.trigger_policy.condition)
    assert "check-for-drift-Output" in branch.trigger_policy.condition  # the check's typed bool
    [retraining] = spec.components[branch.component_ref.name].dag.tasks.values()
    assert retraining.caching_options.enable_cache is False
    # The retraining pipeline: its steps inside an exit handler whose exit task counts the run, however it ends.
    retraining_tasks = spec.components[retraining.component_ref.name].dag.tasks
    count = retraining_tasks["count-retrain-run"]
    assert count.trigger_policy.strategy == count.trigger_policy.TriggerStrategy.ALL_UPSTREAM_TASKS_COMPLETED
    assert count.caching_options.enable_cache is False
    [handler] = count.dependent_tasks
    assert count.inputs.parameters["status"].task_final_status.producer_task == handler
    inner = spec.components[retraining_tasks[handler].component_ref.name].dag.tasks
    assert inner["assemble-retraining-data"].caching_options.enable_cache is False
    [training] = [task for name, task in inner.items() if name.startswith("ticketflow-training")]
    assert training.inputs.artifacts["raw_tickets"].task_output_artifact.producer_task == "assemble-retraining-data"
    for name, parameter in spec.root.input_definitions.parameters.items():
        assert len(parameter.description) > 15, name
    assert (ROOT / "pipelines" / "drift.yaml").read_text() == path.read_text(), "run `make compile`"
