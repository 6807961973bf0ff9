"""The `ticketflow` command's entry point: it stops on SIGTERM from its first instant, then runs the CLI.

In a container the command is PID 1 (`ticketflow serve` in the predictor's pod, `docker run <image>`), and the
kernel drops every signal sent to PID 1 that the process has no handler for: a SIGTERM that arrived while the
predictor was still importing or loading its model (`kubectl delete pod`, a rollout, `podman stop`) was lost,
and the container waited out its whole grace period before it was killed (`make smoke-containers` showed it).
This module imports nothing heavy, so the handler is in place before the CLI's imports start; the server later
replaces it with its own, which drains requests and flushes the prediction log.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds like Ctrl-C does: `finally` blocks and atexit handlers run; 143 = 128 + SIGTERM.
    raise SystemExit(128 + signum)


def main() -> int:
    """Runs `ticketflow` (see `ticketflow.pipelines.cli`) with SIGTERM handled from the start.

    Returns:
        The command's exit code.
    """
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    from ticketflow.pipelines.cli import main as run_command

    return run_command()


if __name__ == "__main__":
    sys.exit(main())
