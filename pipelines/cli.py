"""Command line of the embedded default: train with kfp.local, score files, move aliases, serve, watch drift.

    ticketflow [--home H] [-v] run [--data FILE] [--category-column C] ...
    ticketflow predict --data IN --out OUT
    ticketflow promote --version N
    ticketflow rollback
    ticketflow champion
    ticketflow drift [--window-hours H | --window-records N]
    ticketflow feedback --ticket-id ID --label category=Network [--label priority=high]
    ticketflow review-queue [--limit N] [--json] [--label-issues [--target T]]
    ticketflow serve [--host 127.0.0.1] [--port 8080]

`--home` and `-v` go before or after the subcommand. `run` and `drift` print a short summary and, as the last
line of stdout, one JSON object; kfp.local's task logs go to `<home>/runs/<run>/tasks.log` (and to stderr with
`-v`). Exit codes: 0 success, 1 failure (one `error: ...` line on stderr), 2 wrong usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

from ticketflow.components.config import TicketflowConfig, export_to_environment
from ticketflow.monitoring.drift import DriftThresholds
from ticketflow.pipelines.local_runner import ANSI_ESCAPE, PipelineRun, run_pipeline
from ticketflow.serving.cli import DESCRIPTION as SERVE_DESCRIPTION
from ticketflow.serving.cli import add_serve_arguments, run_server

log = logging.getLogger("ticketflow")

# The errors a user can cause or fix (a bad file, a missing version, a failed task): one `error:` line, no traceback.
EXPECTED_ERRORS = (ValueError, KeyError, OSError, RuntimeError)


def _use_home(args: argparse.Namespace) -> TicketflowConfig:
    # kfp.local's tasks and the server read their settings from the environment they inherit: hand them the state
    # folder there, absolute so that every step agrees on it.
    home = Path(args.home or TicketflowConfig.from_env().home).resolve()
    export_to_environment(home=str(home))
    return TicketflowConfig.from_env()


def _runs_folder(cfg: TicketflowConfig) -> Path:
    """kfp.local's pipeline root: a folder per run, holding its artifacts and `tasks.log`."""
    return Path(cfg.home) / "runs"


def run_training(args: argparse.Namespace) -> dict[str, object]:
    """Runs the training pipeline through kfp.local's SubprocessRunner and returns its summary.

    Args:
        args: Parsed `run` options.

    Returns:
        The pipeline's summary plus the browsable report, the run's artifacts folder and its task log.

    Raises:
        FileNotFoundError: The DATA file does not exist.
    """
    from ticketflow.pipelines.training import training_pipeline

    cfg = _use_home(args)
    data = Path(args.data).resolve()
    if not data.is_file():
        raise FileNotFoundError(f"DATA file not found: {args.data}")
    # An option wins over the environment (TICKETFLOW_EMBEDDING_*), which wins over the default: from_env's overrides.
    encoder = TicketflowConfig.from_env(
        embedding_model=args.embedding_model,
        embedding_precision=args.embedding_precision,
        embedding_max_tokens=args.embedding_max_tokens,
    )
    params = {
        "data_uri": str(data),  # kfp.local's importer takes a local path as the artifact's URI
        "text_columns": args.text_columns,
        "category_column": args.category_column,
        "priority_column": args.priority_column,
        "id_column": args.id_column,
        "min_class_examples": args.min_class_examples,
        "test_size": args.test_size,
        "seed": args.seed,
        "embedding_model": encoder.embedding_model,
        "embedding_precision": encoder.embedding_precision,
        "embedding_max_tokens": encoder.embedding_max_tokens,
        "registered_model_name": args.model_name,
        # Checked here (at least 1), so that a bad value is a usage error before the pipeline starts.
        "tuning_trials": TicketflowConfig.from_env(tuning_trials=args.tuning_trials).tuning_trials,
        "mask_personal_data": cfg.mask_personal_data,  # TICKETFLOW_MASK_PERSONAL_DATA: the report quotes tickets
    }
    run = run_pipeline(
        training_pipeline, {k: v for k, v in params.items() if v is not None}, _runs_folder(cfg), args.verbose
    )
    summary = json.loads(run.output)
    report = _browsable_copy(
        cfg, summary["report_html"], f"evaluation-{summary['model_name']}-v{summary['model_version']}.html"
    )
    summary["report_artifact"], summary["report_html"] = summary["report_html"], str(report)
    summary["artifacts"] = str(run.run_dir)
    summary["tasks_log"] = str(run.tasks_log)
    return summary


def human_summary(summary: dict[str, object]) -> str:
    """A few lines a person reads after a training run."""
    lines = [
        "ticketflow training run",
        f"  rows read {summary['rows_read']}, rejected {summary['rows_rejected']} "
        f"{summary.get('rejected_by_reason') or ''}".rstrip(),
    ]
    for target, scores in summary["metrics"].items():
        lines.append(f"  {target}: accuracy {scores['accuracy']:.3f}, macro-F1 {scores['macro_f1']:.3f}")
    lines += [
        f"  MLflow run {summary['run_id']} ({summary.get('tracking_uri', '')})",
        f"  model {summary['model_name']} version {summary['model_version']}: "
        f"{'now champion' if summary['champion'] else 'not champion'} ({summary['decision']})",
        f"  evaluation report: {summary['report_html']}",
        f"  pipeline artifacts: {summary['artifacts']}",
        f"  task log: {summary['tasks_log']}",
    ]
    return "\n".join(lines)


def _browsable_copy(cfg: TicketflowConfig, artifact: str | Path, name: str) -> Path:
    """Copies an HTML artifact to `<home>/reports/<name>`: KFP artifact files carry no suffix a browser needs."""
    report = Path(cfg.home) / "reports" / name
    report.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(artifact, report)
    return report


def cmd_run(args: argparse.Namespace) -> None:
    """`run`: train, print the summary and one JSON line."""
    summary = run_training(args)
    print(human_summary(summary))
    print(json.dumps(summary), flush=True)


def cmd_predict(args: argparse.Namespace) -> None:
    """`predict`: score a file with the champion and write it with prediction columns added."""
    from ticketflow.components.predict import score_file

    cfg = _use_home(args)
    result = score_file(args.data, args.out, cfg)
    print(json.dumps(result), flush=True)


def cmd_promote(args: argparse.Namespace) -> None:
    """`promote`: move champion to a version by hand."""
    from ticketflow.components.champion import promote

    print(promote(_use_home(args), str(args.version)))


def cmd_rollback(args: argparse.Namespace) -> None:
    """`rollback`: move champion back to the previous champion."""
    from ticketflow.components.champion import rollback

    print(rollback(_use_home(args)))


def cmd_champion(args: argparse.Namespace) -> None:
    """`champion`: print the champion's version; exit 1 when there is none (make serve trains then)."""
    import mlflow
    from mlflow import MlflowClient

    from ticketflow.components.champion import alias_version

    cfg = _use_home(args)
    mlflow.set_tracking_uri(cfg.tracking_uri)
    version = alias_version(MlflowClient(), cfg.registered_model_name, cfg.champion_alias)
    if version is None:
        raise ValueError(f"no {cfg.champion_alias} for {cfg.registered_model_name} in {cfg.tracking_uri}")
    print(version)


def _label(text: str) -> tuple[str, str]:
    """`target=label` from the command line."""
    target, sep, label = text.partition("=")
    if not sep or not target.strip():
        raise argparse.ArgumentTypeError(f"expected TARGET=LABEL (e.g. category=Network), got {text!r}")
    return target.strip(), label


def cmd_feedback(args: argparse.Namespace) -> None:
    """`feedback`: record the true labels of a logged ticket; prints the stored record as one JSON object."""
    from ticketflow.monitoring.feedback import FeedbackStore, InvalidFeedbackError
    from ticketflow.monitoring.request_log import PredictionLog

    cfg = _use_home(args)
    labels: dict[str, str] = {}
    for target, label in args.label:
        if target in labels:
            raise InvalidFeedbackError(f"--label {target}=… is given twice")
        labels[target] = label
    record = FeedbackStore(cfg.prediction_log).record(
        args.ticket_id,
        labels,
        args.source,
        prediction_log=PredictionLog(cfg.prediction_log),
        known_tickets=lambda ticket_id: _label_issue_snapshot(cfg, ticket_id),
    )
    print(json.dumps(record.to_dict(), ensure_ascii=False), flush=True)


def _label_issue_snapshot(cfg: TicketflowConfig, ticket_id: str) -> dict[str, object] | None:
    """The champion's label issue of a training ticket, as the record its correction keeps; None when not listed."""
    from ticketflow.components.audit import LabelIssuesUnavailableError, champion_label_issues

    try:
        return champion_label_issues(cfg).feedback_snapshots().get(ticket_id)
    except LabelIssuesUnavailableError:
        return None


def cmd_review_queue(args: argparse.Namespace) -> None:
    """`review-queue`: the logged tickets flagged for review and not yet labelled, least confident first.

    With `--label-issues`: the champion's training tickets whose labels it disputes, most disputed first.
    """
    from ticketflow.monitoring.feedback import FeedbackStore, review_items
    from ticketflow.monitoring.request_log import PredictionLog

    cfg = _use_home(args)
    if args.label_issues:
        _list_label_issues(cfg, args)
        return
    if args.target is not None:
        raise ValueError("--target goes with --label-issues (the review queue lists every target)")
    items = review_items(FeedbackStore(cfg.prediction_log).review_queue(PredictionLog(cfg.prediction_log), args.limit))
    if args.json:
        print(json.dumps({"count": len(items), "tickets": items}, ensure_ascii=False), flush=True)
        return
    if not items:
        print("review queue is empty: no unlabelled ticket is flagged needs_review")
        return
    print(f"{'ticket_id':<28} {'min conf':>8}  {'predicted':<36} text")
    for item in items:
        predicted = ", ".join(f"{t}={v['label']} ({v['confidence']:.2f})" for t, v in item["labels"].items())
        text = item["text"].replace("\n", " ")
        text = text if len(text) <= 60 else text[:59] + "…"
        minimum = float("nan") if item["min_confidence"] is None else item["min_confidence"]
        print(f"{item['ticket_id']:<28} {minimum:>8.3f}  {predicted:<36} {text}")


def _list_label_issues(cfg: TicketflowConfig, args: argparse.Namespace) -> None:
    """`review-queue --label-issues`: the champion's disputed training labels and how to correct one."""
    from ticketflow.components.audit import champion_label_issues, shorten

    if args.limit < 1:
        raise ValueError(f"limit must be a positive integer, not {args.limit}")
    champion = champion_label_issues(cfg)
    ranked = champion.ranked(args.target)
    listed = ranked.head(args.limit)
    if args.json:
        answer = {
            "model_version": champion.version,
            "run_id": champion.run_id,
            "total": len(ranked),
            "count": len(listed),
            "tickets": listed.to_dict("records"),
        }
        print(json.dumps(answer, ensure_ascii=False), flush=True)
        return
    counts = ", ".join(f"{t} {n}" for t, n in sorted(champion.counts.items()))
    print(f"label issues of the champion v{champion.version} (run {champion.run_id}): {counts or 'none audited'}")
    if listed.empty:
        print("no training ticket's label is disputed" + (f" for {args.target}" if args.target else ""))
        return
    print(f"{'ticket_id':<20} {'target':<10} {'given -> suggested (confidence)':<44} text")
    for row in listed.to_dict("records"):
        change = f"{row['given_label']} -> {row['suggested_label']} ({row['confidence']:.2f})"
        print(f"{row['ticket_id']:<20} {row['target']:<10} {change:<44} {shorten(row['text'], 60)}")
    first = listed.iloc[0]
    print(
        f"{len(listed)} of {len(ranked)} listed. Correct one (the next training learns it): ticketflow feedback "
        f"--ticket-id {first['ticket_id']} --label {first['target']}={first['suggested_label']}"
    )


def _registry_state(cfg: TicketflowConfig) -> tuple[str | None, int]:
    import mlflow
    from mlflow import MlflowClient

    from ticketflow.components.champion import alias_version

    mlflow.set_tracking_uri(cfg.tracking_uri)
    client = MlflowClient()
    versions = client.search_model_versions(f"name='{cfg.registered_model_name}'")
    return alias_version(client, cfg.registered_model_name, cfg.champion_alias), len(versions)


def cmd_drift(args: argparse.Namespace) -> None:
    """`drift`: one drift check (and a retrain when drift is found) through kfp.local."""
    from ticketflow.pipelines.drift import drift_pipeline

    cfg = _use_home(args)
    champion_before, versions_before = _registry_state(cfg)
    params = {
        "window_hours": args.window_hours,
        "window_records": args.window_records,
        "min_tickets": args.min_tickets,
        "pushgateway": "",  # the compiled default is the cluster's Pushgateway; here the metrics go to <home>/metrics
    }
    run = run_pipeline(
        drift_pipeline, {k: v for k, v in params.items() if v is not None}, _runs_folder(cfg), args.verbose
    )
    summary = json.loads(run.output)
    champion_after, versions_after = _registry_state(cfg)
    summary.update(
        retrained=versions_after > versions_before,
        champion_changed=champion_after != champion_before,
        champion_version=champion_after,
        artifacts=str(run.run_dir),
        tasks_log=str(run.tasks_log),
    )
    summary.update(_drift_report(cfg, run))
    print(drift_summary(summary))
    print(json.dumps(summary), flush=True)


def _drift_report(cfg: TicketflowConfig, run: PipelineRun) -> dict[str, str]:
    """The drift check's HTML report, copied where a browser opens it; empty when the check wrote none."""
    artifact = run.run_dir / "check-for-drift" / "report"
    if not artifact.is_file():
        return {}
    report = _browsable_copy(cfg, artifact, f"drift-{run.run_dir.name}.html")
    return {"report_html": str(report), "report_artifact": str(artifact)}


def drift_summary(summary: dict[str, object]) -> str:
    """A few lines a person reads after a drift check."""
    verdict = (
        "drift detected" if summary["drift_detected"] else ("no drift" if summary["enough_data"] else "not enough data")
    )
    lines = [f"ticketflow drift check: {verdict} ({summary['reason']})"]
    for signal, values in summary["scores"].items():
        lines.append(
            f"  {signal:<12} score {values['score']:.4f}  threshold {values['threshold']:.4f}"
            f"{'  DRIFT' if values['drifted'] else ''}"
        )
    for queue in summary["queues"]:
        if queue["drifted"]:
            lines.append(
                f"  queue {queue['queue']}: {100 * queue['share']:.1f}% of the window "
                f"({100 * queue['reference_share']:.1f}% in training), its tickets drifted"
            )
    lines.append(
        f"  retrained: {summary['retrained']}, champion changed: {summary['champion_changed']} "
        f"(champion v{summary['champion_version']})"
    )
    if "report_html" in summary:
        lines.append(f"  drift report: {summary['report_html']}")
    lines.append(f"  task log: {summary['tasks_log']}")
    return "\n".join(lines)


def cmd_serve(args: argparse.Namespace) -> int:
    """`serve`: the predictor over HTTP until SIGINT/SIGTERM (see `ticketflow.serving.cli`)."""
    _use_home(args)
    return run_server(args)


def _shared_options(defaults: TicketflowConfig, suppress: bool) -> argparse.ArgumentParser:
    """`--home` and `-v`, accepted before the subcommand and after it.

    Args:
        defaults: The configuration as the environment sets it (for the help text).
        suppress: For the subcommands' copy: an option not given there must not overwrite the value given
            before the subcommand, so its default is `argparse.SUPPRESS`.

    Returns:
        A parent parser.
    """
    parent = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    now = f"; now {defaults.home}" if defaults.home != TicketflowConfig().home else ""
    (home_variable,) = TicketflowConfig.env_names("home")
    parent.add_argument(
        "--home",
        default=argparse.SUPPRESS if suppress else None,
        help="state folder of the embedded default: MLflow store, ChromaDB, runs, reports "
        f"(default: ${home_variable}, else {TicketflowConfig().home} in the current folder{now})",
    )
    parent.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="log at INFO level, and stream kfp.local's task logs to stderr too (default: off; `run` and `drift` "
        "write them to <home>/runs/<run>/tasks.log)",
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    defaults = TicketflowConfig.from_env()
    drift_defaults = DriftThresholds()
    shared = _shared_options(defaults, suppress=True)
    parser = argparse.ArgumentParser(
        prog="ticketflow",
        description=__doc__.split("\n\n")[0],
        parents=[_shared_options(defaults, suppress=False)],
        allow_abbrev=False,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_command(name: str, help_text: str, description: str | None = None) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, help=help_text, description=description or help_text, parents=[shared], allow_abbrev=False
        )

    run = add_command("run", "train on a ticket export through the training pipeline (kfp.local)")
    run.add_argument(
        "--data",
        default="data/sample_tickets.csv",
        help="ticket export: CSV, JSON lines (or a JSON array) or Parquet (default: %(default)s, the bundled sample)",
    )
    run.add_argument("--text-columns", help="comma-separated text columns (default: auto-detect)")
    run.add_argument("--category-column", help="category/queue label column (default: auto-detect)")
    run.add_argument("--priority-column", help="priority label column; 'none' disables it (default: auto-detect)")
    run.add_argument("--id-column", help="ticket id column (default: auto-detect, else derived from the content)")
    run.add_argument(
        "--min-class-examples",
        type=int,
        help=f"classes with fewer tickets are left out of training (default: {defaults.min_class_examples})",
    )
    run.add_argument(
        "--test-size",
        type=float,
        help=f"fraction of tickets held out for evaluation, 0-1 (default: {defaults.test_size})",
    )
    run.add_argument("--seed", type=int, help=f"seed of the split, search and models (default: {defaults.seed})")
    run.add_argument(
        "--embedding-model",
        help=f"sentence-transformers name or path (default: {defaults.embedding_model}, the bundled copy)",
    )
    run.add_argument(
        "--embedding-precision",
        choices=("int8", "fp32"),
        help=f"the encoder's precision; the model records it (default: {defaults.embedding_precision})",
    )
    run.add_argument(
        "--embedding-max-tokens",
        type=int,
        help=f"tokens of a ticket the encoder reads, 0: the model's limit (default: {defaults.embedding_max_tokens})",
    )
    run.add_argument("--model-name", help=f"registered model name (default: {defaults.registered_model_name})")
    run.add_argument(
        "--tuning-trials",
        type=int,
        help="meta-model configurations the seeded tuner tries per target, 1: no search "
        f"(default: {defaults.tuning_trials})",
    )
    run.set_defaults(func=cmd_run)

    predict = add_command("predict", "score a file with the champion")
    predict.add_argument("--data", required=True, help="tickets to score: CSV, JSON lines or Parquet (required)")
    predict.add_argument("--out", required=True, help="output file: the same columns plus predictions (required)")
    predict.set_defaults(func=cmd_predict)

    promote = add_command("promote", "move the champion alias to a version")
    promote.add_argument("--version", required=True, help="registered model version to promote (required)")
    promote.set_defaults(func=cmd_promote)

    rollback = add_command("rollback", "move the champion alias back to the previous champion")
    rollback.set_defaults(func=cmd_rollback)

    champion = add_command("champion", "print the champion's version (exit 1 when there is none)")
    champion.set_defaults(func=cmd_champion)

    drift = add_command("drift", "check served tickets for drift; retrain when they drifted (kfp.local)")
    window = drift.add_mutually_exclusive_group()
    window.add_argument(
        "--window-hours", type=float, help="window of the prediction log, in hours (default: 24, the pipeline's)"
    )
    window.add_argument(
        "--window-records", type=int, help="check the last N served tickets instead (default: none, use hours)"
    )
    drift.add_argument(
        "--min-tickets",
        type=int,
        help=f"fewer tickets give 'not enough data' (default: {drift_defaults.min_tickets})",
    )
    drift.set_defaults(func=cmd_drift)

    feedback = add_command("feedback", "record the true labels of a logged ticket (agents' corrections)")
    feedback.add_argument(
        "--ticket-id",
        required=True,
        help="the ticket's id as answered: <request id>-<index>, or a training ticket's id as `review-queue "
        "--label-issues` lists it (required)",
    )
    feedback.add_argument(
        "--label",
        action="append",
        type=_label,
        required=True,
        metavar="TARGET=LABEL",
        help="true label of a target, e.g. category=Network; repeat for more targets (required)",
    )
    feedback.add_argument("--source", default="agent", help="who corrects (default: %(default)s)")
    feedback.set_defaults(func=cmd_feedback)

    queue = add_command("review-queue", "unlabelled tickets flagged for review, least confident first")
    queue.add_argument("--limit", type=int, default=50, help="most tickets listed (default: %(default)s)")
    queue.add_argument(
        "--json", action="store_true", help="print one JSON object instead of a table (default: a table)"
    )
    queue.add_argument(
        "--label-issues",
        action="store_true",
        help="list the champion's training tickets whose labels it confidently disputes instead, most disputed "
        "first (default: off)",
    )
    queue.add_argument("--target", help="with --label-issues: only this target's, e.g. category (default: all)")
    queue.set_defaults(func=cmd_review_queue)

    serve = add_command("serve", "serve the champion over HTTP (KServe V1/V2)", SERVE_DESCRIPTION)
    add_serve_arguments(serve)
    serve.set_defaults(func=cmd_serve)
    return parser


def _configure_logging(verbose: bool) -> None:
    # Quiet by default: stdout holds the result, stderr only warnings and errors unless -v asks for more.
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point.

    Args:
        argv: Arguments without the program name (default: `sys.argv[1:]`).

    Returns:
        The exit code: 0 success, 1 failure (argparse exits with 2 on wrong usage).
    """
    args = build_parser().parse_args(argv)
    if args.func is not cmd_serve:  # the server configures its own logging (access lines at INFO)
        _configure_logging(args.verbose)
    try:
        return args.func(args) or 0
    except EXPECTED_ERRORS as exc:
        print(f"error: {ANSI_ESCAPE.sub('', str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
