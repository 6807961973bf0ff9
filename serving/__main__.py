"""Starts the ticket predictor: `ticketflow serve [--host 127.0.0.1] [--port 8080]`.

It serves the MLflow model behind the `champion` alias (tracking URI from `MLFLOW_TRACKING_URI`, else the
embedded sqlite file), or `--model_dir` (what a KServe `storageUri` delivers at /mnt/models). It binds
127.0.0.1 unless told otherwise: a container passes `--host 0.0.0.0`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys


def _import_kserve_quietly():
    # Importing kserve parses sys.argv (abbreviations included, exit 2 on a bad value): hide our arguments.
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        import kserve.model_server as kserve_server
    finally:
        sys.argv = argv
    return kserve_server


def build_parser(kserve_parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The command line: kserve's own options plus ours."""
    parents = [kserve_parser] if kserve_parser is not None else []
    parser = argparse.ArgumentParser(
        prog="python -m serving", description=__doc__.split("\n\n")[0], parents=parents, conflict_handler="resolve"
    )
    parser.add_argument(
        "--model_name",
        default=os.environ.get("TICKETFLOW_MODEL_NAME", "ticket-classifier"),
        help="model name in the URL (default ticket-classifier)",
    )
    parser.add_argument("--http_port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument(
        "--host",
        default=os.environ.get("HOST", "127.0.0.1"),
        help="address to bind (default 127.0.0.1; 0.0.0.0 in a container)",
    )
    parser.add_argument(
        "--model_alias",
        default=os.environ.get("TICKETFLOW_MODEL_ALIAS", ""),
        help="registry alias to serve (default champion)",
    )
    parser.add_argument(
        "--model_dir",
        default=os.environ.get("TICKETFLOW_MODEL_DIR") or None,
        help="serve this MLflow model directory instead of the registry's champion",
    )
    parser.add_argument(
        "--reload_interval", type=float, default=None, help="seconds between checks for a new champion (0 disables)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    kserve_server = _import_kserve_quietly()
    args, _ = build_parser(kserve_server.parser).parse_known_args(argv)

    from kserve.errors import ModelMissingError

    from ticketflow.components.config import TicketflowConfig
    from ticketflow.monitoring.feedback import FeedbackStore, feedback_uri
    from ticketflow.monitoring.request_log import PredictionLog
    from ticketflow.serving.predictor import TicketClassifier
    from ticketflow.serving.server import build_app, serve

    cfg = TicketflowConfig.from_env(registered_model_name=args.model_name, champion_alias=args.model_alias)
    interval = cfg.reload_interval_seconds if args.reload_interval is None else args.reload_interval
    request_log = PredictionLog(cfg.prediction_log, retention_days=cfg.log_retention_days)
    model = TicketClassifier(args.model_name, cfg, model_dir=args.model_dir, request_log=request_log)
    try:
        model.load()
    except ModelMissingError as exc:
        print(f"error: nothing to serve: {exc}", file=sys.stderr)
        return 1
    feedback_store = FeedbackStore(feedback_uri(cfg))  # its routes check ticket ids against the model's request_log
    app = build_app(model, args.http_port, os.environ.get("TICKETFLOW_API_TOKEN") or None, interval, feedback_store)
    logging.getLogger(__name__).info(
        "serving %s v%s on http://%s:%d", model.name, model.loaded.version, args.host, args.http_port
    )
    serve(app, args.host, args.http_port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
