"""`make schedule`: the recurring run sent to the KFP API (the API server itself cannot run here)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.conftest import ROOT
from ticketflow.pipelines.schedule import DEFAULT_CRON, DriftSchedule, create_schedule


class RecordingClient:
    """Stands in for kfp.Client's API server: records what would be sent."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def create_experiment(self, **kwargs):
        self.calls.append(("create_experiment", kwargs))
        return SimpleNamespace(experiment_id="exp-1")

    def create_recurring_run(self, **kwargs):
        self.calls.append(("create_recurring_run", kwargs))
        return SimpleNamespace(recurring_run_id="rr-1")


def test_recurring_run_every_six_hours_with_caching_off() -> None:
    client = RecordingClient()
    schedule = DriftSchedule(pipeline_package=str(ROOT / "pipelines" / "drift.yaml"))
    run = create_schedule(client, schedule)
    assert run.recurring_run_id == "rr-1"
    (_, experiment), (_, request) = client.calls
    assert experiment == {"name": "ticketflow", "namespace": "kubeflow"}
    assert request["experiment_id"] == "exp-1"
    assert request["cron_expression"] == DEFAULT_CRON == "0 0 */6 * * *"
    assert request["enable_caching"] is False and request["max_concurrency"] == 1 and request["no_catchup"] is True
    assert request["pipeline_package_path"].endswith("pipelines/drift.yaml")
    assert set(request["params"]) <= {
        "window_hours",
        "window_records",
        "min_tickets",
        "pushgateway",
        "descriptor_threshold",
        "prediction_threshold",
        "embedding_quantile",
        "confidence_drop",
        "retraining_data_dir",
    }


@pytest.mark.parametrize("cron", ["0 */6 * * *", "every 6 hours", "0 0 */6 * * * *", ""])
def test_five_field_or_malformed_cron_is_refused(cron: str) -> None:
    with pytest.raises(ValueError, match="six fields"):
        create_schedule(
            RecordingClient(), DriftSchedule(cron=cron, pipeline_package=str(ROOT / "pipelines/drift.yaml"))
        )


def test_missing_compiled_pipeline_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="make compile"):
        create_schedule(RecordingClient(), DriftSchedule(pipeline_package=str(tmp_path / "nope.yaml")))
