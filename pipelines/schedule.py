"""`make schedule`: a Kubeflow Pipelines recurring run of the drift pipeline (every 6 hours by default).

    python -m ticketflow.pipelines.schedule --host http://localhost:8080 [--cron "0 0 */6 * * *"] [--namespace kubeflow]

KFP's cron has six fields, seconds first. Caching is switched off for the whole run: every run reads new
traffic and the live registry, and a cached drift verdict would silently repeat the first one.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ticketflow.components.config import CLUSTER_PUSHGATEWAY

DEFAULT_CRON = "0 0 */6 * * *"  # second minute hour day-of-month month day-of-week: every 6 hours
_CRON_FIELD = r"(\*|\?|[0-9A-Za-z,\-*/]+)"
_SIX_FIELDS = re.compile(rf"^{_CRON_FIELD}( {_CRON_FIELD}){{5}}$")


@dataclass(frozen=True)
class DriftSchedule:
    """What the recurring run is made of.

    Attributes:
        cron: KFP six-field cron expression (seconds first).
        experiment: KFP experiment the runs are filed under.
        job_name: Name of the recurring run.
        pipeline_package: Compiled drift pipeline (from `make compile`).
        params: Pipeline parameters (e.g. pushgateway, window_hours).
        namespace: Kubeflow namespace (multi-user installs: the profile's).
    """

    cron: str = DEFAULT_CRON
    experiment: str = "ticketflow"
    job_name: str = "ticketflow-drift-check"
    pipeline_package: str = "pipelines/drift.yaml"
    params: dict[str, object] = field(default_factory=lambda: {"window_hours": 6.0, "pushgateway": CLUSTER_PUSHGATEWAY})
    namespace: str = "kubeflow"

    def validate(self) -> None:
        """Raises ValueError for a cron that is not KFP's six-field form or a missing pipeline file."""
        if not _SIX_FIELDS.match(self.cron.strip()):
            raise ValueError(f"cron {self.cron!r} must have six fields, seconds first (e.g. {DEFAULT_CRON!r})")
        if not Path(self.pipeline_package).is_file():
            raise ValueError(f"{self.pipeline_package} not found: run `make compile` first")


def create_schedule(client, schedule: DriftSchedule):
    """Creates (or reuses) the experiment and the recurring run.

    Args:
        client: A `kfp.Client` connected to the Kubeflow Pipelines API.
        schedule: What to schedule.

    Returns:
        The recurring run the API created.
    """
    schedule.validate()
    experiment = client.create_experiment(name=schedule.experiment, namespace=schedule.namespace)
    return client.create_recurring_run(
        experiment_id=experiment.experiment_id,
        job_name=schedule.job_name,
        description="Evidently drift check of served tickets; retrains behind the quality gate on drift.",
        cron_expression=schedule.cron,
        max_concurrency=1,  # two checks at once would race for the same retrain
        no_catchup=True,  # after downtime, one check on fresh data beats a backlog of stale ones
        params=schedule.params,
        pipeline_package_path=schedule.pipeline_package,
        enable_caching=False,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m ticketflow.pipelines.schedule", description=__doc__.split("\n\n")[0]
    )
    defaults = DriftSchedule()
    parser.add_argument("--host", required=True, help="Kubeflow Pipelines API, e.g. http://localhost:8080")
    parser.add_argument("--cron", default=defaults.cron, help="six-field cron, seconds first (default: %(default)s)")
    parser.add_argument("--namespace", default=defaults.namespace, help="Kubeflow namespace (default: %(default)s)")
    parser.add_argument(
        "--pushgateway",
        default=defaults.params["pushgateway"],
        help="Pushgateway host:port the drift check pushes to (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    import kfp

    schedule = DriftSchedule(
        cron=args.cron, namespace=args.namespace, params={**defaults.params, "pushgateway": args.pushgateway}
    )
    try:
        run = create_schedule(kfp.Client(host=args.host, namespace=args.namespace), schedule)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"recurring run {getattr(run, 'recurring_run_id', run)} created: {schedule.cron}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
