"""The drift pipeline: check a window of served tickets; when they drifted, retrain behind the quality gate.

Compile with `python -m ticketflow.pipelines.drift` (writes `pipelines/drift.yaml`); `make schedule` runs it
every 6 hours on Kubeflow as a recurring run. Every task reads changing data (the prediction log, the
registry), so caching is off for all of them, at every level: the retraining steps are
`ticketflow.pipelines.training.training_from_dataset`, whose tasks carry caching off themselves, since a
run's `enable_caching` does not reach inside a nested pipeline. A cached drift verdict or retrain is the
classic stale-recurring-run mistake.

The check's typed `bool` output is the branch's condition; its JSON summary is an output of the check (in the
dashboard) and the pipeline's result. The retraining data goes to the training steps as a `Dataset` artifact.

On a cluster the two tasks that read the prediction log and the feedback (the drift check and the retraining
data) get the database URL as `TICKETFLOW_PREDICTION_LOG` from the Secret `ticketflow-database` (key `url`) in
the namespace where Kubeflow runs the pods (manifests/kfp); the pod does not start without it, rather than check
an empty log of its own. kfp.local ignores that platform setting: locally the tasks inherit the variable.
The Pushgateway parameter defaults to the in-cluster service (`CLUSTER_PUSHGATEWAY`), so that a run started
from the dashboard publishes its scores; `ticketflow drift` (`make drift`) passes "" and writes text files.

The retraining branch is a pipeline of its own, `retraining_pipeline`, because KFP allows a `dsl.ExitHandler`
only at the outermost scope of a pipeline function, not inside a `dsl.If`: its exit task counts every
retraining run in `ticketflow_retrain_runs_total{result}`, failed ones included (the alert RetrainFailed).
"""

from kfp import dsl, kubernetes

from ticketflow.components.config import (
    CLUSTER_DATABASE_SECRET,
    CLUSTER_DATABASE_SECRET_KEY,
    CLUSTER_PUSHGATEWAY,
    TicketflowConfig,
)
from ticketflow.components.kfp import LIGHT_STEP, MODEL_STEP, TORCH_STEP, sized
from ticketflow.monitoring.drift import DriftThresholds
from ticketflow.monitoring.kfp import assemble_retraining_data, check_for_drift, count_retrain_run
from ticketflow.pipelines.compile_yaml import compile_to
from ticketflow.pipelines.training import training_from_dataset

DEFAULTS = TicketflowConfig()
THRESHOLDS = DriftThresholds()
PIPELINE_NAME = "ticketflow-drift-check"
RETRAINING_PIPELINE_NAME = "ticketflow-retraining"
# The Secret in the KFP namespace holding the database URL, and its key (manifests/kfp).
DATABASE_SECRET = CLUSTER_DATABASE_SECRET
DATABASE_SECRET_KEY = CLUSTER_DATABASE_SECRET_KEY
(DATABASE_URL_VARIABLE,) = TicketflowConfig.env_names("prediction_log_uri")


def reads_the_database(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Gives a task the database URL (prediction log and feedback) from the Secret in Kubeflow's namespace.

    Args:
        task: A task that reads the prediction log or the feedback.

    Returns:
        The task, with the Secret's key as its `TICKETFLOW_PREDICTION_LOG` (not optional: no Secret, no pod).
    """
    return kubernetes.use_secret_as_env(
        task, secret_name=DATABASE_SECRET, secret_key_to_env={DATABASE_SECRET_KEY: DATABASE_URL_VARIABLE}
    )


@dsl.pipeline(name=RETRAINING_PIPELINE_NAME)
def retraining_pipeline(
    pushgateway: str = "",
    mlflow_tracking_uri: str = DEFAULTS.mlflow_tracking_uri,
    vector_store_uri: str = DEFAULTS.vector_store_uri,
):
    """Retrains on the champion's data plus the tickets agents corrected, and counts the run however it ends.

    Args:
        pushgateway: Prometheus Pushgateway host:port for the run count; empty writes a local text file.
        mlflow_tracking_uri: MLflow tracking URI; empty means the configured default.
        vector_store_uri: ChromaDB folder or http://host:port; empty means the configured default.
    """
    counted = count_retrain_run(pushgateway=pushgateway)
    sized(counted, LIGHT_STEP).set_caching_options(False)
    with dsl.ExitHandler(counted, name="retraining"):
        data = assemble_retraining_data(mlflow_tracking_uri=mlflow_tracking_uri)
        sized(data, MODEL_STEP).set_caching_options(False)  # loads the champion
        reads_the_database(data)  # the agents' corrections
        retrain = training_from_dataset(
            raw_tickets=data.outputs["retraining_data"],
            mlflow_tracking_uri=mlflow_tracking_uri,
            vector_store_uri=vector_store_uri,
        )
        retrain.set_caching_options(False)  # its own tasks have caching off too (training_from_dataset)


@dsl.pipeline(name=PIPELINE_NAME)
def drift_pipeline(
    window_hours: float = 24.0,
    window_records: int = 0,
    min_tickets: int = THRESHOLDS.min_tickets,
    descriptor_threshold: float = THRESHOLDS.descriptor,
    prediction_threshold: float = THRESHOLDS.prediction,
    embedding_quantile: float = THRESHOLDS.embedding_quantile,
    confidence_drop: float = THRESHOLDS.confidence_drop,
    pushgateway: str = CLUSTER_PUSHGATEWAY,
    mlflow_tracking_uri: str = DEFAULTS.mlflow_tracking_uri,
    vector_store_uri: str = DEFAULTS.vector_store_uri,
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
        pushgateway: Prometheus Pushgateway host:port for the scores and the retraining count; the default is
            the cluster's (manifests/monitoring); empty writes text files under the state folder.
        mlflow_tracking_uri: MLflow tracking URI; empty means MLFLOW_TRACKING_URI, else the image's cluster
            default (the MLflow Service), or a local sqlite file.
        vector_store_uri: ChromaDB http://host:port or folder; empty means TICKETFLOW_VECTOR_STORE, else the
            image's cluster default (the ChromaDB Service), or a local folder.

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
        mlflow_tracking_uri=mlflow_tracking_uri,
        vector_store_uri=vector_store_uri,
    )
    sized(check, TORCH_STEP).set_caching_options(False)
    reads_the_database(check)  # the window of served tickets, and live accuracy from the feedback
    # The typed return ("Output"): kfp.local evaluates a condition only on a task's output of that name.
    with dsl.If(check.outputs["Output"] == True, name="drift-detected"):  # noqa: E712 - a KFP condition
        retrain = retraining_pipeline(
            pushgateway=pushgateway, mlflow_tracking_uri=mlflow_tracking_uri, vector_store_uri=vector_store_uri
        )
        retrain.set_caching_options(False)
    return check.outputs["summary"]


if __name__ == "__main__":
    print(compile_to(drift_pipeline, "pipelines/drift.yaml"))
