"""Command line of the embedded default: run the training pipeline with kfp.local, score files, move aliases.

    python -m ticketflow.pipelines.cli run [--data FILE] [--category-column C] ...
    python -m ticketflow.pipelines.cli predict --data IN --out OUT
    python -m ticketflow.pipelines.cli promote --version N
    python -m ticketflow.pipelines.cli rollback
    python -m ticketflow.pipelines.cli drift [--window-hours H | --window-records N]
    python -m ticketflow.pipelines.cli feedback --ticket-id ID --label category=Network [--label priority=high]
    python -m ticketflow.pipelines.cli review-queue [--limit N] [--json]

`run` prints a line per step, a short human summary, and as its last line of stdout one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import time
from pathlib import Path

from ticketflow.components.config import TicketflowConfig

log = logging.getLogger("ticketflow")


def _use_home(args: argparse.Namespace) -> TicketflowConfig:
    # Subprocess tasks inherit the environment: make the state folder absolute so every step agrees on it.
    home = Path(args.home or os.environ.get("TICKETFLOW_HOME") or TicketflowConfig().home).resolve()
    os.environ["TICKETFLOW_HOME"] = str(home)
    return TicketflowConfig.from_env()


def run_training(args: argparse.Namespace) -> dict[str, object]:
    """Runs the training pipeline through kfp.local's SubprocessRunner and returns its summary."""
    from ticketflow.pipelines.training import training_pipeline

    cfg = _use_home(args)
    data = Path(args.data).resolve()
    if not data.is_file():
        raise SystemExit(f"error: DATA file not found: {args.data}")
    _init_local_runner(cfg)
    params = {
        "data_path": str(data),
        "text_columns": args.text_columns,
        "category_column": args.category_column,
        "priority_column": args.priority_column,
        "id_column": args.id_column,
        "min_class_examples": args.min_class_examples,
        "test_size": args.test_size,
        "seed": args.seed,
        "embedding_model": args.embedding_model,
        "registered_model_name": args.model_name,
    }
    params = {k: v for k, v in params.items() if v is not None}
    task = training_pipeline(**params)
    summary = json.loads(task.output)
    report = _browsable_copy(
        cfg, summary["report_html"], f"evaluation-{summary['model_name']}-v{summary['model_version']}.html"
    )
    summary["report_artifact"], summary["report_html"] = summary["report_html"], str(report)
    summary["artifacts"] = str(Path(summary["report_artifact"]).parents[1])
    return summary


def human_summary(summary: dict[str, object]) -> str:
    """A few lines a person reads after a training run."""
    lines = [
        "",
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
    ]
    return "\n".join(lines)


def _init_local_runner(cfg: TicketflowConfig) -> Path:
    """Points kfp.local's subprocess runner at `<home>/runs` and returns that folder."""
    from kfp import local

    runs = Path(cfg.home) / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(runs))
    return runs


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
    from ticketflow.components.register import promote

    print(promote(_use_home(args), str(args.version)))


def cmd_rollback(args: argparse.Namespace) -> None:
    """`rollback`: move champion back to the previous champion."""
    from ticketflow.components.register import rollback

    print(rollback(_use_home(args)))


def cmd_champion(args: argparse.Namespace) -> None:
    """`champion`: print the champion's version; exit 1 when there is none (make serve trains then)."""
    import mlflow
    from mlflow import MlflowClient

    from ticketflow.components.register import alias_version

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
    from ticketflow.monitoring.feedback import FeedbackStore, InvalidFeedbackError, feedback_uri
    from ticketflow.monitoring.request_log import PredictionLog

    cfg = _use_home(args)
    labels: dict[str, str] = {}
    for target, label in args.label:
        if target in labels:
            raise InvalidFeedbackError(f"--label {target}=… is given twice")
        labels[target] = label
    record = FeedbackStore(feedback_uri(cfg)).record(
        args.ticket_id, labels, args.source, prediction_log=PredictionLog(cfg.prediction_log)
    )
    print(json.dumps(record.to_dict(), ensure_ascii=False), flush=True)


def cmd_review_queue(args: argparse.Namespace) -> None:
    """`review-queue`: the logged tickets flagged for review and not yet labelled, least confident first."""
    from ticketflow.monitoring.feedback import FeedbackStore, feedback_uri, review_items
    from ticketflow.monitoring.request_log import PredictionLog

    cfg = _use_home(args)
    items = review_items(FeedbackStore(feedback_uri(cfg)).review_queue(PredictionLog(cfg.prediction_log), args.limit))
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


def _registry_state(cfg: TicketflowConfig) -> tuple[str | None, int]:
    import mlflow
    from mlflow import MlflowClient

    from ticketflow.components.register import alias_version

    mlflow.set_tracking_uri(cfg.tracking_uri)
    client = MlflowClient()
    versions = client.search_model_versions(f"name='{cfg.registered_model_name}'")
    return alias_version(client, cfg.registered_model_name, cfg.champion_alias), len(versions)


def cmd_drift(args: argparse.Namespace) -> None:
    """`drift`: one drift check (and a retrain when drift is found) through kfp.local."""
    from ticketflow.pipelines.drift import drift_pipeline

    cfg = _use_home(args)
    champion_before, versions_before = _registry_state(cfg)
    runs = _init_local_runner(cfg)
    params = {"window_hours": args.window_hours, "window_records": args.window_records, "min_tickets": args.min_tickets}
    started = time.time()
    summary = json.loads(drift_pipeline(**{k: v for k, v in params.items() if v is not None}).output)
    champion_after, versions_after = _registry_state(cfg)
    summary.update(
        retrained=versions_after > versions_before,
        champion_changed=champion_after != champion_before,
        champion_version=champion_after,
    )
    written = [p for p in runs.glob("*/check-for-drift/report") if p.stat().st_mtime >= started]
    if written:
        artifact = max(written, key=lambda p: p.stat().st_mtime)
        report = _browsable_copy(cfg, artifact, f"drift-{artifact.parents[1].name}.html")
        summary.update(report_html=str(report), report_artifact=str(artifact))
    verdict = (
        "drift detected" if summary["drift_detected"] else ("no drift" if summary["enough_data"] else "not enough data")
    )
    print(f"\nticketflow drift check: {verdict} ({summary['reason']})")
    for signal, values in summary["scores"].items():
        print(
            f"  {signal:<12} score {values['score']:.4f}  threshold {values['threshold']:.4f}"
            f"{'  DRIFT' if values['drifted'] else ''}"
        )
    for queue in summary["queues"]:
        if queue["drifted"]:
            print(
                f"  queue {queue['queue']}: {100 * queue['share']:.1f}% of the window "
                f"({100 * queue['reference_share']:.1f}% in training), its tickets drifted"
            )
    print(
        f"  retrained: {summary['retrained']}, champion changed: {summary['champion_changed']} "
        f"(champion v{champion_after})"
    )
    if "report_html" in summary:
        print(f"  drift report: {summary['report_html']}")
    print(json.dumps(summary), flush=True)


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    defaults = TicketflowConfig()
    parser = argparse.ArgumentParser(prog="ticketflow", description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", help=f"state folder of the embedded default (default {defaults.home})")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the training pipeline on the embedded default (kfp.local)")
    run.add_argument("--data", default="data/sample_tickets.csv", help="ticket export: CSV, JSON lines or Parquet")
    run.add_argument("--text-columns", help="comma-separated text columns (default: auto-detect)")
    run.add_argument("--category-column", help="category/queue label column (default: auto-detect)")
    run.add_argument("--priority-column", help="priority label column; 'none' disables (default: auto-detect)")
    run.add_argument("--id-column", help="ticket id column (default: auto-detect, else content-derived)")
    run.add_argument("--min-class-examples", type=int)
    run.add_argument("--test-size", type=float)
    run.add_argument("--seed", type=int)
    run.add_argument("--embedding-model", help="sentence-transformers name or path (default: bundled MiniLM)")
    run.add_argument("--model-name", help=f"registered model name (default {defaults.registered_model_name})")
    run.set_defaults(func=cmd_run)
    predict = sub.add_parser("predict", help="score a file with the champion")
    predict.add_argument("--data", required=True, help="tickets to score: CSV, JSON lines or Parquet")
    predict.add_argument("--out", required=True, help="output file (same columns plus predictions)")
    predict.set_defaults(func=cmd_predict)
    promote = sub.add_parser("promote", help="move the champion alias to a version")
    promote.add_argument("--version", required=True)
    promote.set_defaults(func=cmd_promote)
    rollback = sub.add_parser("rollback", help="move the champion alias back to the previous champion")
    rollback.set_defaults(func=cmd_rollback)
    drift = sub.add_parser("drift", help="check served tickets for drift; retrain when they drifted")
    drift.add_argument("--window-hours", type=float, help="window of the prediction log in hours (default 24)")
    drift.add_argument("--window-records", type=int, help="use the last N served tickets instead")
    drift.add_argument("--min-tickets", type=int, help="fewer tickets give 'not enough data' (default 100)")
    drift.set_defaults(func=cmd_drift)
    champion = sub.add_parser("champion", help="print the champion's version (exit 1 when there is none)")
    champion.set_defaults(func=cmd_champion)
    feedback = sub.add_parser("feedback", help="record the true labels of a logged ticket (agents' corrections)")
    feedback.add_argument("--ticket-id", required=True, help="the ticket's id as answered: <request id>-<index>")
    feedback.add_argument(
        "--label",
        action="append",
        type=_label,
        required=True,
        metavar="TARGET=LABEL",
        help="true label of a target, e.g. category=Network; repeat for more targets",
    )
    feedback.add_argument("--source", default="agent", help="who corrects (default agent)")
    feedback.set_defaults(func=cmd_feedback)
    queue = sub.add_parser("review-queue", help="unlabelled tickets flagged for review, least confident first")
    queue.add_argument("--limit", type=int, default=50, help="most tickets listed (default 50)")
    queue.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    queue.set_defaults(func=cmd_review_queue)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as exc:
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
        if "Inner task failed" in message:
            message += " The task's log above ends with the cause."
        print(f"error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
