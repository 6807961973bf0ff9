"""`python -m ticketflow.serving [--host 127.0.0.1] [--port 8080] ...`: the predictor, as `ticketflow serve`."""

from __future__ import annotations

import sys

from ticketflow.serving.cli import build_serve_parser, run_server


def main(argv: list[str] | None = None) -> int:
    """Parses the options strictly (an unknown one exits 2) and serves.

    Args:
        argv: Arguments; None reads sys.argv.

    Returns:
        The exit code.
    """
    return run_server(build_serve_parser(prog="python -m ticketflow.serving").parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
