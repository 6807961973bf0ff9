"""`make schedule`: a Kubeflow Pipelines recurring run of the drift pipeline (every 6 hours by default).

    python -m ticketflow.pipelines.schedule --host http://localhost:8080 [--cron "0 0 */6 * * *"]
        [--namespace kubeflow-user-example-com] [--token-file -] [--service-account SA]

KFP's cron has six fields, seconds first. Caching is switched off for the whole run: every run reads new
traffic and the live registry, and a cached drift verdict would silently repeat the first one.

Running it again replaces the recurring run of the same name in the experiment instead of adding a second one
(two would run every check twice and race for the same retrain): the new one is created first, then the old ones
are deleted, so a refused request leaves the schedule that was there. Host, namespace and token are those of
`ticketflow.pipelines.kfp_api` (a multi-user Kubeflow needs the last two); the service account is the one the
runs' pods use (empty: KFP's default, `pipeline-runner` on a standalone install, `default-editor` in a profile
namespace).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ticketflow.components.config import CLUSTER_PUSHGATEWAY
from ticketflow.pipelines.kfp_api import DEFAULT_NAMESPACE, add_cluster_arguments, run_on_cluster

DEFAULT_CRON = "0 0 */6 * * *"  # second minute hour day-of-month month day-of-week: every 6 hours
_CRON_FIELD = r"(\*|\?|[0-9A-Za-z,\-*/]+)"
_SIX_FIELDS = re.compile(rf"^{_CRON_FIELD}( {_CRON_FIELD}){{5}}$")
_PAGE_SIZE = 100


@dataclass(frozen=True)
class DriftSchedule:
    """What the recurring run is made of.

    Attributes:
        cron: KFP six-field cron expression (seconds first).
        experiment: KFP experiment the runs are filed under.
        job_name: Name of the recurring run; one of that name lives in the experiment.
        pipeline_package: Compiled drift pipeline (from `make compile`).
        params: Pipeline parameters (e.g. pushgateway, window_hours).
        namespace: Kubeflow namespace (multi-user installs: the profile's; single-user KFP ignores it).
        service_account: Kubernetes service account of the runs' pods; empty means KFP's default.
    """

    cron: str = DEFAULT_CRON
    experiment: str = "ticketflow"
    job_name: str = "ticketflow-drift-check"
    pipeline_package: str = "pipelines/drift.yaml"
    params: dict[str, object] = field(default_factory=lambda: {"window_hours": 6.0, "pushgateway": CLUSTER_PUSHGATEWAY})
    namespace: str = DEFAULT_NAMESPACE
    service_account: str = ""

    def validate(self) -> None:
        """Raises ValueError for a cron that is not KFP's six-field form or a missing pipeline file."""
        if not _SIX_FIELDS.match(self.cron.strip()):
            raise ValueError(f"cron {self.cron!r} must have six fields, seconds first (e.g. {DEFAULT_CRON!r})")
        if not Path(self.pipeline_package).is_file():
            raise ValueError(f"{self.pipeline_package} not found: run `make compile` first")


@dataclass(frozen=True)
class ScheduledDriftCheck:
    """What `create_schedule` did.

    Attributes:
        recurring_run_id: The recurring run created.
        experiment_id: Its experiment.
        replaced: Ids of the recurring runs of the same name it deleted.
    """

    recurring_run_id: str
    experiment_id: str
    replaced: tuple[str, ...] = ()


def name_filter(name: str) -> str:
    """The KFP list filter (a JSON `Filter` message, backend/api/v2beta1/filter.proto) for `display_name == name`."""
    return json.dumps({"predicates": [{"key": "display_name", "operation": "EQUALS", "string_value": name}]})


def recurring_runs_named(client, experiment_id: str, name: str) -> list[str]:
    """Ids of the experiment's recurring runs called `name`, every page of them.

    Args:
        client: A `kfp.Client`.
        experiment_id: The experiment to look in.
        name: The recurring run's display name.

    Returns:
        Their ids, oldest page first.
    """
    ids: list[str] = []
    next_page = ""
    while True:
        page = client.list_recurring_runs(
            experiment_id=experiment_id, page_token=next_page, page_size=_PAGE_SIZE, filter=name_filter(name)
        )
        # The server filters; checking again keeps a server that ignores the filter from costing other runs.
        ids += [run.recurring_run_id for run in page.recurring_runs or [] if run.display_name == name]
        next_page = page.next_page_token or ""
        if not next_page:
            return ids


def create_schedule(client, schedule: DriftSchedule) -> ScheduledDriftCheck:
    """Creates (or reuses) the experiment and puts the recurring run in place of any of the same name.

    Args:
        client: A `kfp.Client` connected to the Kubeflow Pipelines API.
        schedule: What to schedule.

    Returns:
        The recurring run created and the ones it replaced.
    """
    schedule.validate()
    experiment = client.create_experiment(name=schedule.experiment, namespace=schedule.namespace)
    previous = recurring_runs_named(client, experiment.experiment_id, schedule.job_name)
    created = client.create_recurring_run(
        experiment_id=experiment.experiment_id,
        job_name=schedule.job_name,
        description="Evidently drift check of served tickets; retrains behind the quality gate on drift.",
        cron_expression=schedule.cron,
        max_concurrency=1,  # two checks at once would race for the same retrain
        no_catchup=True,  # after downtime, one check on fresh data beats a backlog of stale ones
        params=schedule.params,
        pipeline_package_path=schedule.pipeline_package,
        enable_caching=False,
        service_account=schedule.service_account or None,
    )
    for recurring_run_id in previous:
        client.delete_recurring_run(recurring_run_id)
    return ScheduledDriftCheck(
        recurring_run_id=created.recurring_run_id, experiment_id=experiment.experiment_id, replaced=tuple(previous)
    )


def build_parser() -> argparse.ArgumentParser:
    """The command's options."""
    parser = argparse.ArgumentParser(
        prog="python -m ticketflow.pipelines.schedule", description=__doc__.split("\n\n")[0]
    )
    defaults = DriftSchedule()
    add_cluster_arguments(parser, pods="the runs' pods")
    parser.add_argument("--cron", default=defaults.cron, help="six-field cron, seconds first (default: %(default)s)")
    parser.add_argument(
        "--pushgateway",
        default=defaults.params["pushgateway"],
        help="Pushgateway host:port the drift check pushes to (default: %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    schedule = DriftSchedule(
        cron=args.cron,
        namespace=args.namespace,
        service_account=args.service_account,
        params={**DriftSchedule().params, "pushgateway": args.pushgateway},
    )
    scheduled = run_on_cluster(args, schedule.validate, lambda client: create_schedule(client, schedule))
    if scheduled is None:
        return 1
    connection, result = scheduled
    replaced = f", replacing {', '.join(result.replaced)}" if result.replaced else ""
    url = connection.recurring_run_url(result.recurring_run_id)
    print(f"recurring run {result.recurring_run_id} ({schedule.cron}){replaced}: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
