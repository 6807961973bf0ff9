"""`make submit`: one training run on a cluster's Kubeflow Pipelines, from the compiled `pipelines/training.yaml`.

    python -m ticketflow.pipelines.submit --host http://localhost:8080 --data minio://mlpipeline/tickets/export.csv
        [--namespace kubeflow-user-example-com] [--token-file -] [--service-account SA] [--experiment ticketflow]

The export must already be in the object store the cluster's pods read (KFP's MinIO: the README shows the upload
with `mc cp` through a port-forward); the run brings it in as an artifact. The command prints the run's page in
the Kubeflow Pipelines dashboard. Host, namespace and token work as for `make schedule`
(`ticketflow.pipelines.kfp_api`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from ticketflow.pipelines.kfp_api import DEFAULT_NAMESPACE, add_cluster_arguments, run_on_cluster

DATA_PARAMETER = "data_uri"  # the training pipeline's object-store entry (pipelines/training.py)
OBJECT_STORE_SCHEMES = ("minio", "s3", "gs")  # what KFP's importer and launcher read


@dataclass(frozen=True)
class TrainingSubmission:
    """One training run to start.

    Attributes:
        data_uri: The ticket export in the cluster's object store, e.g. `minio://mlpipeline/tickets/export.csv`.
        pipeline_package: Compiled training pipeline (from `make compile`).
        experiment: KFP experiment the run is filed under.
        run_name: The run's name; empty means `ticketflow-training <UTC time>`.
        namespace: Kubeflow namespace (multi-user installs: the profile's; single-user KFP ignores it).
        service_account: Kubernetes service account of the run's pods; empty means KFP's default.
    """

    data_uri: str
    pipeline_package: str = "pipelines/training.yaml"
    experiment: str = "ticketflow"
    run_name: str = ""
    namespace: str = DEFAULT_NAMESPACE
    service_account: str = ""

    def validate(self) -> None:
        """Raises ValueError for a data location the pods cannot read or a missing or stale pipeline file."""
        if urlsplit(self.data_uri).scheme not in OBJECT_STORE_SCHEMES or not urlsplit(self.data_uri).netloc:
            schemes = ", ".join(f"{scheme}://" for scheme in OBJECT_STORE_SCHEMES)
            raise ValueError(
                f"--data {self.data_uri!r} is no object-store URI ({schemes}): the run's pods cannot read a file on "
                "this machine. Upload it first (README, 'On Kubeflow') and pass e.g. "
                "minio://mlpipeline/tickets/export.csv"
            )
        path = Path(self.pipeline_package)
        if not path.is_file():
            raise ValueError(f"{path} not found: run `make compile` first")
        spec = next(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        if DATA_PARAMETER not in spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {}):
            raise ValueError(f"{path} has no parameter {DATA_PARAMETER!r}: it is stale, run `make compile`")

    def arguments(self) -> dict[str, object]:
        """The run's pipeline parameters (the rest keep the compiled defaults)."""
        return {DATA_PARAMETER: self.data_uri}

    def name(self) -> str:
        """The run's name."""
        return self.run_name or f"ticketflow-training {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"


def submit_training(client, submission: TrainingSubmission) -> str:
    """Starts the run (creating the experiment when it is new).

    Args:
        client: A `kfp.Client` connected to the Kubeflow Pipelines API.
        submission: What to run.

    Returns:
        The run's id.
    """
    submission.validate()
    result = client.create_run_from_pipeline_package(
        pipeline_file=submission.pipeline_package,
        arguments=submission.arguments(),
        run_name=submission.name(),
        experiment_name=submission.experiment,
        namespace=submission.namespace,
        service_account=submission.service_account or None,
    )
    return result.run_id


def build_parser() -> argparse.ArgumentParser:
    """The command's options."""
    parser = argparse.ArgumentParser(prog="python -m ticketflow.pipelines.submit", description=__doc__.split("\n\n")[0])
    add_cluster_arguments(parser, pods="the run's pods")
    defaults = TrainingSubmission(data_uri="")
    parser.add_argument("--data", required=True, help="the export in the object store, e.g. minio://mlpipeline/x.csv")
    parser.add_argument("--experiment", default=defaults.experiment, help="KFP experiment (default: %(default)s)")
    parser.add_argument("--run-name", default="", help="the run's name (default: ticketflow-training <UTC time>)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    submission = TrainingSubmission(
        data_uri=args.data,
        experiment=args.experiment,
        run_name=args.run_name,
        namespace=args.namespace,
        service_account=args.service_account,
    )
    started = run_on_cluster(args, submission.validate, lambda client: submit_training(client, submission))
    if started is None:
        return 1
    connection, run_id = started
    print(f"training run {run_id} started: {connection.run_url(run_id)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
