"""`ticketflow` as PID 1, as in a container: a SIGTERM in its first seconds stops it.

The kernel drops signals sent to PID 1 that the process does not handle. A new PID namespace (`unshare --pid`,
which needs root, as the tests have here and in CI) makes `ticketflow serve` PID 1 for real.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ticketflow.pipelines.local_services import free_port

pytestmark = pytest.mark.integration

TICKETFLOW = Path(sys.executable).parent / "ticketflow"


def test_the_entry_point_imports_nothing_heavy():
    probe = "import sys, ticketflow.pipelines.entrypoint; print(' '.join(sorted(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert not [name for name in loaded if name.split(".")[0] in {"kfp", "kserve", "torch", "mlflow", "pandas"}]
    assert "ticketflow.pipelines.cli" not in loaded


def namespace_child(unshare_pid: int, timeout: float = 10.0) -> int:
    """The host pid of the process `unshare --fork` started: PID 1 of the new namespace."""
    deadline = time.monotonic() + timeout
    children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children")
    while time.monotonic() < deadline:
        found = children.read_text().split() if children.exists() else []
        if found:
            return int(found[0])
        time.sleep(0.02)
    raise AssertionError("unshare started no process")


def can_make_a_pid_namespace() -> bool:
    """Whether this machine lets us start a process in a new PID namespace (root, and not forbidden by a sandbox)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(not can_make_a_pid_namespace(), reason="no PID namespace here (needs root and unshare)")
def test_ticketflow_serve_as_pid_1_stops_on_a_sigterm_while_it_starts(tmp_path):
    command = [TICKETFLOW, "--home", str(tmp_path), "serve", "--port", str(free_port()), "--reload-interval", "0"]
    unshare = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--kill-child", *map(str, command)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        pid_1 = namespace_child(unshare.pid)
        time.sleep(0.5)  # the handler is in place; the CLI is still importing its modules
        os.kill(pid_1, signal.SIGTERM)
        stderr = unshare.communicate(timeout=30)[1]  # without a handler, PID 1 would never have heard it
    finally:
        if unshare.poll() is None:
            unshare.kill()
            unshare.wait()
    assert unshare.returncode == 128 + signal.SIGTERM, stderr
