"""`make submit`: what one training run sends to the KFP API, and what is refused before any request."""

from __future__ import annotations

import inspect
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import ROOT
from ticketflow.pipelines.submit import DATA_PARAMETER, TrainingSubmission, main, submit_training
from ticketflow.pipelines.training import training_pipeline

TRAINING_YAML = str(ROOT / "pipelines" / "training.yaml")
DATA = "minio://mlpipeline/tickets/export.csv"


class RecordingClient:
    """Stands in for kfp.Client's API server: records what would be sent."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def create_run_from_pipeline_package(self, **kwargs):
        self.calls.append(kwargs)
        return SimpleNamespace(run_id="run-1")


def test_the_data_parameter_is_the_training_pipelines() -> None:
    assert DATA_PARAMETER in inspect.signature(training_pipeline.pipeline_func).parameters


def test_one_run_with_the_data_uri_in_the_namespace() -> None:
    client = RecordingClient()
    submission = TrainingSubmission(
        data_uri=DATA, pipeline_package=TRAINING_YAML, namespace="team-a", service_account="ticketflow-runner"
    )
    assert submit_training(client, submission) == "run-1"
    (call,) = client.calls
    assert call["pipeline_file"] == TRAINING_YAML
    assert call["arguments"] == {DATA_PARAMETER: DATA}  # the rest keep the compiled defaults
    assert call["experiment_name"] == "ticketflow" and call["namespace"] == "team-a"
    assert call["service_account"] == "ticketflow-runner"
    assert call["run_name"].startswith("ticketflow-training ")


@pytest.mark.parametrize("data", ["data/export.csv", "/tmp/export.csv", "file:///tmp/x.csv", "minio://", ""])
def test_a_file_the_pods_cannot_read_is_refused(data: str) -> None:
    client = RecordingClient()
    with pytest.raises(ValueError, match="object-store URI"):
        submit_training(client, TrainingSubmission(data_uri=data, pipeline_package=TRAINING_YAML))
    assert client.calls == []


def test_a_stale_or_missing_pipeline_is_refused(tmp_path: Path) -> None:
    stale = tmp_path / "training.yaml"
    stale.write_text("pipelineInfo: {name: ticketflow-training}\nroot: {inputDefinitions: {parameters: {}}}\n")
    with pytest.raises(ValueError, match="stale"):
        TrainingSubmission(data_uri=DATA, pipeline_package=str(stale)).validate()
    with pytest.raises(ValueError, match="make compile"):
        TrainingSubmission(data_uri=DATA, pipeline_package=str(tmp_path / "nope.yaml")).validate()


def test_refused_before_any_connection(capsys) -> None:
    # A host that would never answer: the local check comes first, so nothing waits for it.
    assert main(["--host", "http://192.0.2.1:8080", "--data", "exports/tickets.csv"]) == 1
    assert "object-store URI" in capsys.readouterr().err
