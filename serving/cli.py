"""The predictor's command line: `ticketflow serve` (and `python -m ticketflow.serving`).

It serves the MLflow model behind the registry alias (`champion` unless told otherwise; tracking URI from
`MLFLOW_TRACKING_URI`, else the embedded sqlite file), or a model directory (what a KServe `storageUri` delivers
at /mnt/models). It binds 127.0.0.1 unless told otherwise: a container passes `--host 0.0.0.0`.

The parser takes only the options the predictor honours and refuses any other. Importing this module is cheap:
kserve (and the model stack) are imported by `run_server` only, because importing `kserve.model_server` parses
`sys.argv` with kserve's own parser.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ticketflow.components.config import TicketflowConfig

_CONFIG_DEFAULTS = TicketflowConfig()
API_TOKEN_ENV = "TICKETFLOW_API_TOKEN"  # nosec B105  # the name of a variable, not a secret
DESCRIPTION = (
    "Serve the ticket classifier over HTTP (KServe V1 and V2 protocols, /metrics, reload, feedback): the model "
    "behind a registry alias, or a model directory. State-changing routes need `Authorization: Bearer <token>` "
    f"when {API_TOKEN_ENV} is set."
)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the predictor's options to `parser` (the `serve` subcommand, or a standalone parser).

    Defaults come from the environment where one is set (`HOST`, `PORT`, `TICKETFLOW_MODEL_NAME`,
    `TICKETFLOW_MODEL_ALIAS`, `TICKETFLOW_MODEL_DIR`), read when this is called.

    Args:
        parser: The parser to add to.
    """
    configured = TicketflowConfig.from_env()
    parser.add_argument(
        "--host",
        default=configured.host,
        help="address to bind; 0.0.0.0 in a container (default: %(default)s; env HOST)",
    )
    parser.add_argument(
        "--port",
        "--http-port",
        "--http_port",
        dest="port",
        type=int,
        # A string default goes through `type` only when used: a bad PORT fails `serve`, not every command.
        default=configured.port,
        help="HTTP port (default: %(default)s; env PORT)",
    )
    parser.add_argument(
        "--model-name",
        "--model_name",
        dest="model_name",
        default=configured.registered_model_name,
        help="registered model to serve, also its name in the URL (default: %(default)s; env TICKETFLOW_MODEL_NAME)",
    )
    parser.add_argument(
        "--model-alias",
        "--model_alias",
        dest="model_alias",
        default=configured.champion_alias,
        help="registry alias to serve and follow (default: %(default)s; env TICKETFLOW_MODEL_ALIAS)",
    )
    model_dir = configured.model_dir or None
    shown_dir = model_dir.replace("%", "%%") if model_dir else "none, serve the registry alias"
    parser.add_argument(
        "--model-dir",
        "--model_dir",
        dest="model_dir",
        default=model_dir,
        help=f"serve this MLflow model directory instead, e.g. /mnt/models (default: {shown_dir}; "
        "env TICKETFLOW_MODEL_DIR)",
    )
    parser.add_argument(
        "--reload-interval",
        "--reload_interval",
        dest="reload_interval",
        type=float,
        default=None,  # None: the configuration's value, read when the server starts
        help="seconds between checks whether the alias moved to a new version, and between load attempts while "
        "no model is loaded; 0 disables the checks, not the load attempts (default: "
        f"{_CONFIG_DEFAULTS.reload_interval_seconds:g}, the configuration's reload_interval_seconds)",
    )


def build_serve_parser(prog: str = "ticketflow serve") -> argparse.ArgumentParser:
    """A standalone parser of the predictor's options, strict with `parse_args`.

    Args:
        prog: Program name shown in usage and errors.

    Returns:
        The parser.
    """
    # No abbreviations: `--model` or `--http` must not quietly mean some option (kserve's parser takes them).
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, allow_abbrev=False)
    add_serve_arguments(parser)
    return parser


def _import_kserve_quietly():
    # Importing kserve.model_server parses sys.argv (abbreviations of its options included, exit 2 on a bad value):
    # hide ours from it.
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        import kserve.model_server as kserve_server
    finally:
        sys.argv = argv
    return kserve_server


def run_server(args: argparse.Namespace) -> int:
    """Loads the model, builds the application and serves it until SIGINT/SIGTERM.

    A failed load does not stop it: with nothing to load yet (no champion, no model directory, no vectors) or
    MLflow, ChromaDB or the database out of reach, the server comes up live but not ready, says why (log,
    `/metrics`, 503 answers) and retries every reload interval until a load succeeds: on a cluster, a pod that
    waits instead of a crash loop.

    Args:
        args: Options parsed by a parser that `add_serve_arguments` filled.

    Returns:
        The exit code: 0 after a clean shutdown.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _import_kserve_quietly()
    # The model stack (kserve, torch, mlflow) loads only now that kserve was imported with a clean sys.argv.
    from ticketflow.monitoring.feedback import FeedbackStore
    from ticketflow.monitoring.request_log import PredictionLog
    from ticketflow.serving.predictor import TicketClassifier
    from ticketflow.serving.server import build_app, serve

    cfg = TicketflowConfig.from_env(registered_model_name=args.model_name, champion_alias=args.model_alias)
    reload_interval = cfg.reload_interval_seconds if args.reload_interval is None else args.reload_interval
    request_log = PredictionLog(
        cfg.prediction_log, retention_days=cfg.log_retention_days, max_buffered=cfg.log_buffer_records
    )
    model = TicketClassifier(args.model_name, cfg, model_dir=args.model_dir, request_log=request_log)
    # Feedback goes to the prediction log's database; its routes check ticket ids against the model's request_log.
    feedback_store = FeedbackStore(cfg.prediction_log)
    api_token = cfg.api_token.get_secret_value() if cfg.api_token else None
    # Loaded before the port opens, as a pod's startup probe expects; a failure is logged and retried meanwhile.
    model.load()
    app = build_app(model, args.port, api_token, reload_interval, feedback_store)
    log = logging.getLogger(__name__)
    url = f"http://{args.host}:{args.port}"
    if model.loaded is not None:
        log.info("serving %s v%s on %s", model.name, model.loaded.version, url)
    else:
        log.info("listening on %s; %s is not ready yet (%s), retrying", url, model.name, model.not_ready_detail)
    serve(app, args.host, args.port)
    return 0
