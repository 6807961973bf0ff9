"""What the committed pipeline YAML asks of a cluster: data through artifacts, no caching anywhere, pod sizes.

Each step is a pod of its own on Kubeflow, so these read the compiled files the dashboard takes
(`pipelines/training.yaml`, `pipelines/drift.yaml`; test_compile.py checks they are current), strictly parsed into
KFP's `PipelineSpec`, and walk every DAG: the root's and every nested pipeline's, condition's and exit handler's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pandas as pd
import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from tests.conftest import ROOT
from ticketflow.components.config import CLUSTER_PUSHGATEWAY
from ticketflow.components.ingest import FILE_FORMAT_KEY, SOURCE_ROW, read_tickets
from ticketflow.pipelines.training import DATA_URI

COMPILED = ("training.yaml", "drift.yaml")
# A task input whose name says it holds a location in a file system: another pod's path means nothing here.
PATH_LIKE = re.compile(r"(^|[_-])(path|dir|directory|folder|file)$", re.IGNORECASE)
TORCH_STEPS = {"embed-tickets", "check-for-drift"}  # they load the sentence-transformers model
GIB = 1024**3 / 1e9  # the spec's memory numbers are in GB
ContainerSpec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec


def compiled_spec(name: str) -> pipeline_spec_pb2.PipelineSpec:
    pipeline = next(yaml.safe_load_all((ROOT / "pipelines" / name).read_text()))
    return json_format.ParseDict(pipeline, pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False)


@pytest.fixture(scope="module", params=COMPILED)
def spec(request: pytest.FixtureRequest) -> pipeline_spec_pb2.PipelineSpec:
    return compiled_spec(request.param)


def every_task(spec: pipeline_spec_pb2.PipelineSpec) -> Iterator[tuple[str, str, pipeline_spec_pb2.PipelineTaskSpec]]:
    """(DAG, task name, task) for the root DAG and every component that is a DAG."""
    dags = {"root": spec.root, **{name: c for name, c in spec.components.items() if c.HasField("dag")}}
    for dag_name, component in dags.items():
        for task_name, task in component.dag.tasks.items():
            yield dag_name, task_name, task


def deployment_of(spec: pipeline_spec_pb2.PipelineSpec) -> pipeline_spec_pb2.PipelineDeploymentConfig:
    return json_format.ParseDict(
        json_format.MessageToDict(spec.deployment_spec),
        pipeline_spec_pb2.PipelineDeploymentConfig(),
        ignore_unknown_fields=False,
    )


def container_steps(spec: pipeline_spec_pb2.PipelineSpec) -> dict[str, ContainerSpec]:
    """The container of every executor, by step name (an importer has none: KFP runs it, not our image)."""
    deployment = deployment_of(spec)
    return {
        name.removeprefix("exec-"): executor.container
        for name, executor in deployment.executors.items()
        if executor.HasField("container")
    }


def test_every_dag_is_walked_down_to_the_training_steps(spec: pipeline_spec_pb2.PipelineSpec) -> None:
    names = {task for _, task, _ in every_task(spec)}
    assert {"ingest-tickets", "embed-tickets", "register-classifier"} <= names


def test_no_task_input_named_like_a_path_is_fed_by_another_task(spec: pipeline_spec_pb2.PipelineSpec) -> None:
    for dag, task_name, task in every_task(spec):
        for name, value in task.inputs.parameters.items():
            if PATH_LIKE.search(name.removeprefix("pipelinechannel--")):
                assert not value.HasField("task_output_parameter"), f"{dag}/{task_name}: {name}"


def test_caching_is_off_for_every_task_at_every_level(spec: pipeline_spec_pb2.PipelineSpec) -> None:
    # A run's enable_caching=False reaches only the root's tasks: each task says it for itself.
    cached = [f"{dag}/{name}" for dag, name, task in every_task(spec) if task.caching_options.enable_cache]
    assert not cached


def test_every_step_states_cpu_and_memory_requests_and_limits(spec: pipeline_spec_pb2.PipelineSpec) -> None:
    steps = container_steps(spec)
    assert steps
    for name, container in steps.items():
        resources = container.resources
        for quantity in ("cpu_request", "cpu_limit", "memory_request", "memory_limit"):
            assert getattr(resources, f"resource_{quantity}"), f"{name}: no {quantity}"
        assert 0 < resources.cpu_request <= resources.cpu_limit, name
        assert 0 < resources.memory_request <= resources.memory_limit, name
        # The steps that load the sentence-transformers model get room for it reserved; no step asks for more than
        # a small Minikube has left beside Kubeflow and our services.
        assert (resources.memory_request >= 2 * GIB) is (name in TORCH_STEPS), (name, resources.resource_memory_request)
        assert resources.memory_limit <= 3 * GIB and resources.cpu_request <= 0.5, name


def test_training_data_comes_in_through_an_importer_from_the_object_store() -> None:
    spec = compiled_spec("training.yaml")
    parameters = spec.root.input_definitions.parameters
    assert parameters["data_uri"].default_value.string_value == DATA_URI == "minio://mlpipeline/tickets/export.csv"
    tasks = spec.root.dag.tasks
    importer = tasks["importer"]
    assert importer.inputs.parameters["uri"].component_input_parameter == "data_uri"
    importer_spec = deployment_of(spec).executors[spec.components[importer.component_ref.name].executor_label].importer
    assert importer_spec.artifact_uri.runtime_parameter == "uri"
    assert importer_spec.type_schema.schema_title == "system.Dataset" and importer_spec.reimport
    [steps] = [t for t in tasks.values() if t is not importer]
    handed = steps.inputs.artifacts["raw_tickets"].task_output_artifact
    assert (handed.producer_task, handed.output_artifact_key) == ("importer", "artifact")
    inner = spec.components[steps.component_ref.name]
    assert inner.input_definitions.artifacts["raw_tickets"].artifact_type.schema_title == "system.Dataset"
    ingest = inner.dag.tasks["ingest-tickets"].inputs.artifacts["raw_tickets"]
    assert ingest.component_input_artifact == "raw_tickets"


def test_retraining_hands_its_data_over_as_an_artifact_and_branches_on_a_typed_verdict() -> None:
    spec = compiled_spec("drift.yaml")
    check = spec.components["comp-check-for-drift"].output_definitions
    assert check.parameters["Output"].parameter_type == pipeline_spec_pb2.ParameterType.BOOLEAN
    assert check.parameters["summary"].parameter_type == pipeline_spec_pb2.ParameterType.STRING
    assert "read-drift-verdict" not in {name for _, name, _ in every_task(spec)}  # no pod to parse JSON
    [branch] = [t for t in spec.root.dag.tasks.values() if t.trigger_policy.condition]
    [(channel, verdict)] = [  # the verdict is all the branch takes from another task
        (name, value) for name, value in branch.inputs.parameters.items() if value.HasField("task_output_parameter")
    ]
    assert (verdict.task_output_parameter.producer_task, verdict.task_output_parameter.output_parameter_key) == (
        "check-for-drift",
        "Output",
    )
    assert branch.trigger_policy.condition == f"inputs.parameter_values['{channel}'] == true"
    [exit_dag] = [c for name, c in spec.components.items() if name.startswith("comp-exit-handler")]
    handed = exit_dag.dag.tasks["ticketflow-training-steps"].inputs.artifacts["raw_tickets"].task_output_artifact
    assert (handed.producer_task, handed.output_artifact_key) == ("assemble-retraining-data", "retraining_data")
    assembled = spec.components["comp-assemble-retraining-data"].output_definitions.artifacts["retraining_data"]
    assert assembled.artifact_type.schema_title == "system.Dataset"
    assert spec.root.dag.outputs.parameters["Output"].value_from_parameter.output_parameter_key == "summary"


def test_drift_steps_take_the_service_addresses_and_push_to_the_cluster_by_default() -> None:
    spec = compiled_spec("drift.yaml")
    parameters = spec.root.input_definitions.parameters
    assert parameters["pushgateway"].default_value.string_value == CLUSTER_PUSHGATEWAY
    for name in ("mlflow_tracking_uri", "vector_store_uri"):
        assert parameters[name].default_value.string_value == "", name  # empty: the image's cluster profile
        assert name in spec.components["comp-check-for-drift"].input_definitions.parameters
        assert spec.root.dag.tasks["check-for-drift"].inputs.parameters[name].component_input_parameter == name
    assert "mlflow_tracking_uri" in spec.components["comp-assemble-retraining-data"].input_definitions.parameters


def test_an_artifact_without_a_suffix_is_read_in_the_format_its_metadata_names(tmp_path) -> None:
    # The retraining data is a file named after its output ("retraining_data"), written as Parquet.
    artifact = tmp_path / "retraining_data"
    pd.DataFrame({"text": ["printer jammed", "vpn down"], "category": ["Hardware", "Network"]}).to_parquet(artifact)
    frame, malformed = read_tickets(artifact, file_format="parquet")
    assert frame["text"].tolist() == ["printer jammed", "vpn down"] and frame[SOURCE_ROW].tolist() == [1, 2]
    assert malformed.empty and FILE_FORMAT_KEY == "format"
