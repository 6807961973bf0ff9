"""The drift pipeline: check a window of served tickets; when they drifted, retrain behind the quality gate.

Compile with `python -m ticketflow.pipelines.drift` (writes `pipelines/drift.yaml`);
`make schedule` runs it every 6 hours
on Kubeflow as a recurring run. Every task reads changing data (the prediction log, the registry), so
caching is off for all of them: a cached drift verdict is the classic stale-recurring-run mistake.

The retraining branch is a pipeline of its own, `retraining_pipeline`, because KFP allows a `dsl.ExitHandler`
only at the outermost scope of a pipeline function, not inside a `dsl.If`: its exit task counts every
retraining run in `ticketflow_retrain_runs_total{result}`, failed ones included (the alert RetrainFailed).
"""

from kfp import dsl

from ticketflow.monitoring.drift import DriftThresholds
from ticketflow.monitoring.kfp import (
    assemble_retraining_data,
    check_for_drift,
    count_retrain_run,
    read_drift_verdict,
)
from ticketflow.pipelines.compile_yaml import compile_to
from ticketflow.pipelines.training import training_pipeline

THRESHOLDS = DriftThresholds()
PIPELINE_NAME = "ticketflow-drift-check"
RETRAINING_PIPELINE_NAME = "ticketflow-retraining"


@dsl.pipeline(name=RETRAINING_PIPELINE_NAME)
def retraining_pipeline(data_dir: str = "", pushgateway: str = ""):
    """Retrains on the champion's data plus the tickets agents corrected, and counts the run however it ends.

    Args:
        data_dir: Folder the retraining data is written to (shared with the training steps); empty: the state folder.
        pushgateway: Prometheus Pushgateway host:port for the run count; empty writes a local text file.
    """
    counted = count_retrain_run(pushgateway=pushgateway)
    counted.set_caching_options(False)
    with dsl.ExitHandler(counted, name="retraining"):
        data = assemble_retraining_data(data_dir=data_dir)
        data.set_caching_options(False)
        retrain = training_pipeline(data_path=data.output)
        retrain.set_caching_options(False)


@dsl.pipeline(name=PIPELINE_NAME)
def drift_pipeline(
    window_hours: float = 24.0,
    window_records: int = 0,
    min_tickets: int = THRESHOLDS.min_tickets,
    descriptor_threshold: float = THRESHOLDS.descriptor,
    prediction_threshold: float = THRESHOLDS.prediction,
    embedding_quantile: float = THRESHOLDS.embedding_quantile,
    confidence_drop: float = THRESHOLDS.confidence_drop,
    pushgateway: str = "",
    retraining_data_dir: str = "",
) -> str:
    """Checks served tickets for drift against the champion's training data and retrains when they drifted.

    Args:
        window_hours: Window of the prediction log to check, in hours (when window_records is 0).
        window_records: Check the last N served tickets instead of a time window; 0 uses window_hours.
        min_tickets: Fewer tickets in the window give "not enough data" instead of a verdict.
        descriptor_threshold: Wasserstein distance (normed) above which a text descriptor drifted.
        prediction_threshold: Jensen-Shannon distance above which the predicted category mix drifted.
        embedding_quantile: Bootstrap quantile, 0–1, the embedding distance must exceed.
        confidence_drop: Drop of the mean top-label confidence, 0–1, that counts as drift.
        pushgateway: Prometheus Pushgateway host:port for the scores and the retraining count; empty: local files.
        retraining_data_dir: Folder the retraining data is written to (shared with the training steps).

    Returns:
        The drift check's JSON summary.
    """
    check = check_for_drift(
        window_hours=window_hours,
        window_records=window_records,
        min_tickets=min_tickets,
        descriptor_threshold=descriptor_threshold,
        prediction_threshold=prediction_threshold,
        embedding_quantile=embedding_quantile,
        confidence_drop=confidence_drop,
        pushgateway=pushgateway,
    )
    check.set_caching_options(False)
    verdict = read_drift_verdict(summary_json=check.outputs["Output"])
    verdict.set_caching_options(False)
    with dsl.If(verdict.output == True, name="drift-detected"):  # noqa: E712 - a KFP condition, not Python
        retrain = retraining_pipeline(data_dir=retraining_data_dir, pushgateway=pushgateway)
        retrain.set_caching_options(False)
    return check.outputs["Output"]


if __name__ == "__main__":
    print(compile_to(drift_pipeline, "pipelines/drift.yaml"))
