"""`make schedule`: the recurring run sent to the KFP API (the API server itself cannot run here).

A stand-in for `kfp.Client` keeps the API server's recurring runs in memory and records each call: the tests check
what would be sent and that scheduling again replaces the recurring run of the same name. The real client against a
stand-in HTTP server: tests/integration/pipelines/test_cluster_runs.py.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import yaml

from tests.conftest import ROOT
from ticketflow.pipelines.schedule import DEFAULT_CRON, DriftSchedule, create_schedule, name_filter

DRIFT_YAML = str(ROOT / "pipelines" / "drift.yaml")


class RecordingClient:
    """Stands in for kfp.Client's API server: records what would be sent and keeps the recurring runs."""

    def __init__(self, page_size: int = 2) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.recurring_runs: list[SimpleNamespace] = []
        self.page_size = page_size  # the server's limit: the caller must follow next_page_token

    def create_experiment(self, **kwargs):
        self.calls.append(("create_experiment", kwargs))
        return SimpleNamespace(experiment_id="exp-1")

    def list_recurring_runs(self, **kwargs):
        self.calls.append(("list_recurring_runs", kwargs))
        (predicate,) = json.loads(kwargs["filter"])["predicates"]
        found = [
            run
            for run in self.recurring_runs
            if run.experiment_id == kwargs["experiment_id"] and run.display_name == predicate["string_value"]
        ]
        start = int(kwargs["page_token"] or 0)
        end = start + min(kwargs["page_size"], self.page_size)
        return SimpleNamespace(recurring_runs=found[start:end], next_page_token=str(end) if end < len(found) else "")

    def create_recurring_run(self, **kwargs):
        self.calls.append(("create_recurring_run", kwargs))
        run = SimpleNamespace(
            recurring_run_id=f"rr-{len(self.calls)}", display_name=kwargs["job_name"], experiment_id="exp-1"
        )
        self.recurring_runs.append(run)
        return run

    def delete_recurring_run(self, recurring_run_id: str):
        self.calls.append(("delete_recurring_run", {"recurring_run_id": recurring_run_id}))
        self.recurring_runs = [run for run in self.recurring_runs if run.recurring_run_id != recurring_run_id]
        return {}

    def sent(self, method: str) -> list[dict]:
        return [kwargs for name, kwargs in self.calls if name == method]


def test_recurring_run_every_six_hours_with_caching_off() -> None:
    client = RecordingClient()
    result = create_schedule(client, DriftSchedule(pipeline_package=DRIFT_YAML))
    assert result.recurring_run_id == client.recurring_runs[0].recurring_run_id and result.replaced == ()
    (experiment,) = client.sent("create_experiment")
    (request,) = client.sent("create_recurring_run")
    assert experiment == {"name": "ticketflow", "namespace": "kubeflow"}
    assert request["experiment_id"] == "exp-1"
    assert request["cron_expression"] == DEFAULT_CRON == "0 0 */6 * * *"
    assert request["enable_caching"] is False and request["max_concurrency"] == 1 and request["no_catchup"] is True
    assert request["pipeline_package_path"].endswith("pipelines/drift.yaml")
    assert request["service_account"] is None  # KFP's default
    compiled = next(yaml.safe_load_all((ROOT / "pipelines" / "drift.yaml").read_text(encoding="utf-8")))
    assert set(request["params"]) == {"window_hours", "pushgateway"}
    assert set(request["params"]) <= set(compiled["root"]["inputDefinitions"]["parameters"])  # a run fails on others


def test_namespace_and_service_account_reach_the_api() -> None:
    client = RecordingClient()
    schedule = DriftSchedule(
        pipeline_package=DRIFT_YAML, namespace="kubeflow-user-example-com", service_account="ticketflow-runner"
    )
    create_schedule(client, schedule)
    assert client.sent("create_experiment") == [{"name": "ticketflow", "namespace": "kubeflow-user-example-com"}]
    assert client.sent("create_recurring_run")[0]["service_account"] == "ticketflow-runner"


def test_scheduling_again_replaces_the_recurring_run_of_the_same_name() -> None:
    client = RecordingClient(page_size=2)
    other = SimpleNamespace(recurring_run_id="rr-other", display_name="nightly-report", experiment_id="exp-1")
    # Three left over (more than a page) from before this behaviour, and someone else's.
    stale = [
        SimpleNamespace(recurring_run_id=f"rr-old-{n}", display_name="ticketflow-drift-check", experiment_id="exp-1")
        for n in range(3)
    ]
    client.recurring_runs = [other, *stale]
    first = create_schedule(client, DriftSchedule(pipeline_package=DRIFT_YAML))
    assert first.replaced == ("rr-old-0", "rr-old-1", "rr-old-2")
    second = create_schedule(client, DriftSchedule(pipeline_package=DRIFT_YAML, cron="0 0 */3 * * *"))
    assert second.replaced == (first.recurring_run_id,)
    assert [run.recurring_run_id for run in client.recurring_runs] == ["rr-other", second.recurring_run_id]
    # The new one is created before the old ones go: a refused request leaves the schedule that was there.
    methods = [name for name, _ in client.calls]
    last_create = len(methods) - 1 - methods[::-1].index("create_recurring_run")
    assert methods[last_create + 1 :] == ["delete_recurring_run"]
    filters = {kwargs["filter"] for kwargs in client.sent("list_recurring_runs")}
    assert filters == {name_filter("ticketflow-drift-check")}


def test_the_name_filter_is_kfps_filter_message() -> None:
    assert json.loads(name_filter("ticketflow-drift-check")) == {
        "predicates": [{"key": "display_name", "operation": "EQUALS", "string_value": "ticketflow-drift-check"}]
    }


@pytest.mark.parametrize("cron", ["0 */6 * * *", "every 6 hours", "0 0 */6 * * * *", ""])
def test_five_field_or_malformed_cron_is_refused(cron: str) -> None:
    client = RecordingClient()
    with pytest.raises(ValueError, match="six fields"):
        create_schedule(client, DriftSchedule(cron=cron, pipeline_package=DRIFT_YAML))
    assert client.calls == []


def test_missing_compiled_pipeline_is_refused(tmp_path) -> None:
    client = RecordingClient()
    with pytest.raises(ValueError, match="make compile"):
        create_schedule(client, DriftSchedule(pipeline_package=str(tmp_path / "nope.yaml")))
    assert client.calls == []
