"""The whole training pipeline through kfp.local (SubprocessRunner), as `make run` runs it.

Real parts: the CLI in a subprocess, kfp.local, a sqlite MLflow store, a persistent ChromaDB, the bundled
embedding model. The first run is the session's one training run on a fresh home (`trained_run`,
tests/integration/conftest.py), whose output and registrations are checked here; the tests then share a copy of
its state folder and run in order (a second run on the same data, then batch scoring and alias moves).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.conftest import ROOT, SAMPLE
from tests.integration.conftest import TrainedRun, copy_trained_home
from ticketflow.components.champion import HISTORY_TAG
from ticketflow.components.config import TicketflowConfig
from ticketflow.components.embed import EncoderSpec
from ticketflow.components.store import VectorStore, cache_collection_name
from ticketflow.pipelines import cli

MODEL = "ticket-classifier"


def run_cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ticketflow.pipelines.cli", "--home", str(home), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def last_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def champion_of(client: MlflowClient) -> str:
    return str(client.get_model_version_by_alias(MODEL, "champion").version)


@pytest.fixture(scope="module")
def home(trained_run: TrainedRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's copy of the first run's state folder: the second run and the alias moves change it."""
    return copy_trained_home(trained_run.home, tmp_path_factory, "ticketflow-home")


@pytest.fixture(scope="module")
def client(home: Path) -> MlflowClient:
    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    return MlflowClient()


@pytest.fixture(scope="module")
def first_proc(trained_run: TrainedRun) -> subprocess.CompletedProcess:
    """`ticketflow run` on a fresh home: the session's training run."""
    return trained_run.proc


@pytest.fixture(scope="module")
def first_run(first_proc: subprocess.CompletedProcess) -> dict:
    return last_json(first_proc)


def test_summary_line_has_the_promised_facts(first_run: dict) -> None:
    for key in (
        "rows_read",
        "rows_rejected",
        "metrics",
        "run_id",
        "model_name",
        "model_version",
        "champion",
        "decision",
        "report_html",
    ):
        assert key in first_run
    source_lines = len(SAMPLE.read_text().splitlines()) - 1
    assert first_run["rows_read"] == source_lines
    assert first_run["rows_rejected"] == 4  # the sample's deliberately bad lines
    assert set(first_run["metrics"]) == {"category", "priority"}
    for scores in first_run["metrics"].values():
        assert 0.0 < scores["macro_f1"] < 1.0 and 0.0 < scores["accuracy"] < 1.0
    # The sample carries label noise and ambiguous tickets: good, never perfect.
    assert 0.7 < first_run["metrics"]["category"]["accuracy"] < 1.0
    assert first_run["champion"] is True and first_run["model_version"] == "1"
    assert "no champion" in first_run["decision"]
    html = Path(first_run["report_html"]).read_text()
    assert html.startswith("<!doctype html>") and "data:image/png;base64," in html and "category" in html


def test_stdout_is_a_short_summary_and_the_task_logs_go_to_the_run_folder(
    first_proc: subprocess.CompletedProcess, first_run: dict
) -> None:
    lines = first_proc.stdout.strip().splitlines()
    assert len(lines) - 1 <= 15, first_proc.stdout[:3000]  # a summary, then the JSON line
    assert lines[0] == "ticketflow training run"
    assert "Executing task" not in first_proc.stdout + first_proc.stderr
    # Not a terminal: no progress lines, and kfp's warning about our (non-Python) base image is filtered.
    assert "non-Python base image" not in first_proc.stderr
    assert first_proc.stderr.strip() == "", first_proc.stderr[-3000:]
    tasks_log = Path(first_run["tasks_log"])
    assert tasks_log.is_file() and tasks_log.parent == Path(first_run["artifacts"])
    assert f"task log: {tasks_log}" in first_proc.stdout
    text = tasks_log.read_text()
    for step in (
        "importer",
        "ingest-tickets",
        "prepare-text",
        "embed-tickets",
        "train-classifier",
        "evaluate-classifier",
    ):
        assert f"Executing task '{step}'" in text and f"Task '{step}' finished with status SUCCESS" in text
    assert "Pipeline 'ticketflow-training' finished with status SUCCESS" in text
    assert "\x1b[" not in text  # colour codes are left out of the file
    assert "Batches:" not in text  # no tqdm bar (a line per redraw) when the output is not a terminal
    assert not list(tasks_log.parents[1].glob(".tasks-*"))  # the temporary log was moved into the run folder


def test_rejected_rows_are_kept_as_an_artifact(first_run: dict) -> None:
    rejected = pd.read_csv(Path(first_run["artifacts"]) / "ingest-tickets" / "rejected_rows")
    assert len(rejected) == first_run["rows_rejected"]
    assert sorted(rejected["reject_reason"]) == sorted(
        ["empty text", "missing label: category", "duplicate id: ticket_id", "malformed line"]
    )


def test_registered_version_carries_aliases_tags_and_reference(
    first_run: dict, client: MlflowClient, trained_run: TrainedRun
) -> None:
    version = client.get_model_version(MODEL, "1")
    assert set(version.aliases) == {"champion", "challenger"}
    assert version.tags["gate.decision"] == "promoted"
    assert version.tags["collection"].startswith("tickets-")
    run = client.get_run(first_run["run_id"])
    assert run.data.tags["mlflow.source.git.commit"] == trained_run.commit  # HEAD when the run started
    assert run.data.metrics["category.macro_f1"] == pytest.approx(
        first_run["metrics"]["category"]["macro_f1"], abs=1e-4
    )
    assert {
        "category.routed_precision",
        "category.routed_coverage",
        "category.min_class_routed_precision",
        "priority.ece",
        "mean_macro_f1",
    } <= set(run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(first_run["run_id"])}
    assert {"evaluation.html", "evaluation.json", "rejected_rows.csv", "ingest_report.json", "reference"} <= artifacts
    reference = pd.read_parquet(mlflow.artifacts.download_artifacts(version.tags["reference_uri"]))
    assert {"ticket_id", "text", "category", "priority"} <= set(reference.columns)
    assert len(reference) == int(run.data.tags["dataset.rows"]) - len(
        pd.read_parquet(mlflow.artifacts.download_artifacts(f"runs:/{first_run['run_id']}/reference/test.parquet"))
    )


def tuning_table(client: MlflowClient, run_id: str, target: str) -> dict:
    return mlflow.artifacts.load_dict(f"runs:/{run_id}/tuning/{target}.json")


def test_every_tuning_trial_is_in_the_run(first_run: dict, client: MlflowClient) -> None:
    run = client.get_run(first_run["run_id"])
    trials = TicketflowConfig().tuning_trials
    forms = {target: run.data.params[f"{target}.form"] for target in ("category", "priority")}
    # Which form the sample's targets take is the data's business (test_register forces a tuned stack): the record
    # follows the form.
    for target, form in forms.items():
        table = tuning_table(client, run.info.run_id, target)
        tried = list(range(trials)) if form == "stack" else [0]  # another form has no boosted model to tune
        assert [t["number"] for t in table["trials"]] == tried and table["stopped"] is False
        history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, f"{target}.tuning.macro_f1")}
        # One point per scored trial: its macro-F1 at the highest rung it reached (none without a search).
        assert history == {t["number"]: t["rungs"][-1]["macro_f1"] for t in table["trials"] if t["rungs"]}
        assert all(0 < value <= 1 for value in history.values()) and bool(history) == (form == "stack")
        assert run.data.params[f"{target}.tuning.best_trial"] == str(table["best_trial"])
        assert table["best_params"] == table["trials"][table["best_trial"]]["params"]
        for name, value in table["best_params"].items():  # the chosen parameters are run params
            assert run.data.params[f"{target}.booster.{name}"] == str("none" if value is None else value)


def test_vectors_are_in_chromadb(first_run: dict, home: Path, client: MlflowClient) -> None:
    collection = client.get_model_version(MODEL, "1").tags["collection"]
    rows = int(client.get_run(first_run["run_id"]).data.tags["dataset.rows"])
    store = VectorStore(str(home / "chroma"))
    assert store.count(collection) == rows
    assert store.count(cache_collection_name(EncoderSpec.from_config(TicketflowConfig()).key)) >= rows
    stored = store.client.get_collection(collection).get(limit=1, include=["embeddings", "metadatas"])
    hit = store.query(collection, stored["embeddings"], n_results=1)
    assert hit["ids"][0][0] == stored["ids"][0]
    assert {"label:category", "label:priority", "text_hash"} <= set(stored["metadatas"][0])


def test_champion_pyfunc_predicts_from_raw_text(first_run: dict, client: MlflowClient) -> None:
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    out = model.predict(
        pd.DataFrame(
            {
                "subject": ["VPN keeps disconnecting", "Refund for double charge"],
                "body": [
                    "The VPN drops every few minutes when working from home.",
                    "I was billed twice for invoice 4471.",
                ],
                "tags": ["vpn;network", "billing"],
            }
        )
    )
    assert list(out.columns) == [
        "predicted_category",
        "confidence_category",
        "predicted_priority",
        "confidence_priority",
        "needs_review",
    ]
    assert list(out["predicted_category"]) == ["Network", "Billing"]
    assert out["confidence_category"].between(0, 1).all()


def test_second_run_reuses_vectors_and_gate_keeps_the_champion(
    first_run: dict, home: Path, client: MlflowClient
) -> None:
    second = last_json(run_cli(home, "run"))
    assert "0 to encode" in Path(second["tasks_log"]).read_text()  # every vector came from ChromaDB
    assert second["tasks_log"] != first_run["tasks_log"]
    assert second["model_version"] == "2"
    assert second["champion"] is False  # same data, same seed: equal, not better
    assert "does not beat" in second["decision"]
    assert champion_of(client) == "1"
    assert str(client.get_model_version_by_alias(MODEL, "challenger").version) == "2"
    tags = client.get_model_version(MODEL, "2").tags
    assert tags["gate.decision"] == "rejected"
    assert float(tags["gate.new_score"]) == pytest.approx(float(tags["gate.champion_score"]), abs=1e-6)
    # The same data gives the same model: the tuner tried the same trials, scored them alike and chose the same.
    second_run = client.get_model_version(MODEL, "2").run_id
    for target in ("category", "priority"):
        first_table, second_table = (
            tuning_table(client, run, target) | {"seconds": 0} for run in (first_run["run_id"], second_run)
        )
        assert first_table == second_table


def test_predict_scores_a_file_with_the_champion(first_run: dict, home: Path, tmp_path: Path) -> None:
    out = tmp_path / "scored.csv"
    result = last_json(run_cli(home, "predict", "--data", str(SAMPLE), "--out", str(out)))
    scored = pd.read_csv(out, keep_default_na=False)
    source = pd.read_csv(SAMPLE, on_bad_lines="skip", keep_default_na=False)
    assert result["rows_scored"] == len(scored) == len(source)
    assert result["malformed_lines"] == 1
    assert list(scored.columns[: len(source.columns)]) == list(source.columns)
    assert {
        "predicted_category",
        "confidence_category",
        "predicted_priority",
        "confidence_priority",
        "needs_review",
    } <= set(scored.columns)
    assert (scored["predicted_category"] == source["category"]).mean() > 0.8
    assert set(scored["needs_review"].astype(str)) <= {"True", "False"}


def test_promote_and_rollback_move_the_champion(
    first_run: dict, home: Path, client: MlflowClient, capsys: pytest.CaptureFixture
) -> None:
    # The CLI's own entry point in this process: four interpreters importing MLflow would prove nothing more
    # (the console script's exit codes are tests/unit/pipelines/test_cli.py's).
    def ticketflow(*args: str) -> tuple[int, str]:
        code = cli.main(["--home", str(home), *args])
        return code, capsys.readouterr().err

    promoted, err = ticketflow("promote", "--version", "2")
    assert promoted == 0, err
    assert champion_of(client) == "2"
    assert client.get_model_version(MODEL, "2").tags["gate.decision"] == "promoted by hand"
    assert json.loads(client.get_registered_model(MODEL).tags[HISTORY_TAG]) == ["1", "2"]
    rolled, err = ticketflow("rollback")
    assert rolled == 0, err
    assert champion_of(client) == "1"
    again, err = ticketflow("rollback")
    assert again == 1 and "nothing to roll back" in err
    missing, err = ticketflow("promote", "--version", "99")
    assert missing == 1 and "no version '99'" in err


def test_unusable_file_fails_with_one_clear_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("foo,bar\n1,2\n")
    proc = run_cli(tmp_path / "home", "run", "--data", str(bad))
    assert proc.returncode == 1
    assert proc.stdout == ""
    # One error: kfp's message, where the task log is, and the failed task's last lines, which end with the cause.
    assert proc.stderr.startswith("error: ") and proc.stderr.count("error: ") == 1
    assert "Inner task failed: 'ingest-tickets'" in proc.stderr
    tasks_log = next((tmp_path / "home" / "runs").glob("ticketflow-training-*/tasks.log"))
    assert f"The task log is {tasks_log}" in proc.stderr
    assert proc.stderr.rstrip().endswith(
        "TicketDataError: no text column found among ['foo', 'bar']; name one with text_columns (e.g. 'subject,body')"
    )
