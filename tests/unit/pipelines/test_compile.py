"""The pipelines compile, parse back strictly into the KFP PipelineSpec, and match the committed files."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from tests.conftest import ROOT
from ticketflow.components.config import TicketflowConfig
from ticketflow.pipelines.compile_yaml import compile_to
from ticketflow.pipelines.drift import drift_pipeline
from ticketflow.pipelines.training import STEPS_PIPELINE_NAME, training_pipeline

STEPS = [
    "ingest-tickets",
    "prepare-text",
    "embed-tickets",
    "train-classifier",
    "evaluate-classifier",
    "register-classifier",
]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pipeline_spec_pb2.PipelineSpec]:
    path = tmp_path_factory.mktemp("compiled") / "training.yaml"
    compile_to(training_pipeline, str(path))
    documents = list(yaml.safe_load_all(path.read_text()))
    spec = json_format.ParseDict(documents[0], pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False)
    return path, spec


def test_parses_strictly_into_pipeline_spec(compiled: tuple[Path, pipeline_spec_pb2.PipelineSpec]) -> None:
    _, spec = compiled
    assert spec.pipeline_info.name == "ticketflow-training"
    assert spec.pipeline_info.description.startswith("Trains ticket category and priority classifiers")
    # The importer brings the export in; the steps are a pipeline of their own (the retraining branch runs it too).
    assert set(spec.root.dag.tasks) == {"importer", STEPS_PIPELINE_NAME}
    assert set(spec.components[f"comp-{STEPS_PIPELINE_NAME}"].dag.tasks) == set(STEPS)


def test_every_parameter_has_a_description_and_default(compiled: tuple[Path, pipeline_spec_pb2.PipelineSpec]) -> None:
    _, spec = compiled
    parameters = spec.root.input_definitions.parameters
    assert {
        "data_uri",
        "seed",
        "test_size",
        "embedding_model",
        "target_precision",
        "registered_model_name",
        "mlflow_tracking_uri",
        "vector_store_uri",
    } <= set(parameters)
    for name, parameter in parameters.items():
        assert len(parameter.description) > 15, name
        assert parameter.HasField("default_value"), name
    assert parameters["seed"].default_value.number_value == TicketflowConfig().seed
    assert parameters["registered_model_name"].default_value.string_value == "ticket-classifier"


def test_steps_run_in_flow_order(compiled: tuple[Path, pipeline_spec_pb2.PipelineSpec]) -> None:
    _, spec = compiled
    tasks = spec.components[f"comp-{STEPS_PIPELINE_NAME}"].dag.tasks
    for earlier, later in itertools.pairwise(STEPS):
        assert earlier in tasks[later].dependent_tasks, (earlier, later)
    assert "importer" in spec.root.dag.tasks[STEPS_PIPELINE_NAME].dependent_tasks


def test_components_use_our_image_without_installing_kfp(compiled: tuple[Path, pipeline_spec_pb2.PipelineSpec]) -> None:
    _, spec = compiled
    executors = spec.deployment_spec.fields["executors"].struct_value.fields
    containers = {
        name: e.struct_value.fields["container"]
        for name, e in executors.items()
        if "container" in e.struct_value.fields
    }
    assert set(containers) == {f"exec-{step}" for step in STEPS}  # and the importer, which KFP runs itself
    for value in containers.values():
        container = value.struct_value.fields
        assert container["image"].string_value == TicketflowConfig().image
        command = " ".join(v.string_value for v in container["command"].list_value.values)
        assert "pip install" not in command
        assert "from ticketflow.components." in command  # step logic comes from the project's modules


def test_evaluation_outputs_render_in_the_dashboard(compiled: tuple[Path, pipeline_spec_pb2.PipelineSpec]) -> None:
    _, spec = compiled
    outputs = spec.components["comp-evaluate-classifier"].output_definitions.artifacts
    kinds = {name: a.artifact_type.schema_title for name, a in outputs.items()}
    assert kinds["metrics"] == "system.Metrics"
    assert kinds["category_metrics"] == kinds["priority_metrics"] == "system.ClassificationMetrics"
    assert kinds["report"] == "system.HTML"


def test_committed_yaml_is_the_compiled_pipeline(compiled: tuple[Path, pipeline_spec_pb2.PipelineSpec]) -> None:
    path, _ = compiled
    committed = ROOT / "pipelines" / "training.yaml"
    assert committed.read_text() == path.read_text(), "pipelines/training.yaml is stale: run `make compile`"


def test_image_is_configurable_at_compile_time(tmp_path: Path) -> None:
    out = tmp_path / "custom.yaml"
    env = {**os.environ, "TICKETFLOW_IMAGE": "registry.example.com/ticketflow:test"}
    code = (
        "from ticketflow.pipelines.compile_yaml import compile_to; "
        "from ticketflow.pipelines.training import training_pipeline; "
        f"compile_to(training_pipeline, {str(out)!r})"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
    assert "image: registry.example.com/ticketflow:test" in out.read_text()


def test_drift_steps_keep_their_names_and_wrap_the_monitoring_logic(tmp_path: Path) -> None:
    # The drift wrappers moved to ticketflow.monitoring.kfp; task names are the function names and must not change.
    path = tmp_path / "drift.yaml"
    compile_to(drift_pipeline, str(path))
    spec = next(yaml.safe_load_all(path.read_text()))
    drift_steps = {"check-for-drift", "assemble-retraining-data", "count-retrain-run"}
    assert drift_steps <= {name.removeprefix("comp-") for name in spec["components"]}
    executors = spec["deploymentSpec"]["executors"]
    for step in drift_steps:
        command = " ".join(executors[f"exec-{step}"]["container"]["command"])
        assert "from ticketflow.monitoring." in command, step


def test_drift_steps_that_read_the_database_get_its_url_from_a_secret(tmp_path: Path) -> None:
    # On a cluster the log and feedback are in PostgreSQL; a pod in Kubeflow's namespace learns where from a Secret
    # there (manifests/kfp). Exactly the two steps that read them get it; the drift YAML's second document says so.
    from kfp.kubernetes import kubernetes_executor_config_pb2

    from ticketflow.pipelines.drift import DATABASE_SECRET, DATABASE_SECRET_KEY

    path = tmp_path / "drift.yaml"
    compile_to(drift_pipeline, str(path))
    pipeline, platform = yaml.safe_load_all(path.read_text())
    json_format.ParseDict(pipeline, pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False)
    spec = json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec(), ignore_unknown_fields=False)
    executors = spec.platforms["kubernetes"].deployment_spec.executors
    assert set(executors) == {"exec-check-for-drift", "exec-assemble-retraining-data"}
    for name, struct in executors.items():
        config = json_format.ParseDict(
            json_format.MessageToDict(struct),
            kubernetes_executor_config_pb2.KubernetesExecutorConfig(),
            ignore_unknown_fields=False,
        )
        [secret] = config.secret_as_env
        assert secret.secret_name_parameter.runtime_value.constant.string_value == DATABASE_SECRET, name
        assert secret.optional is False, name
        assert [(pair.secret_key, pair.env_var) for pair in secret.key_to_env] == [
            (DATABASE_SECRET_KEY, *TicketflowConfig.env_names("prediction_log_uri"))
        ]
    assert DATABASE_SECRET_KEY == "url" and TicketflowConfig.env_names("prediction_log_uri") == (
        "TICKETFLOW_PREDICTION_LOG",
    )
