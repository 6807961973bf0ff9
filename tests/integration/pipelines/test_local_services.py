"""The stand-in services of `make smoke-containers`: a process group that ignores SIGTERM still goes away.

`mlflow server` leaves job consumers alive after a SIGTERM to its parent; the stand-in here is a real process that
ignores SIGTERM and has a child doing the same, answering a health route like the services do.
"""

from __future__ import annotations

import sys
import textwrap

import pytest
import requests

from ticketflow.pipelines.local_services import ServiceError, ServiceProcess, chroma_server, free_port, group_alive

pytestmark = pytest.mark.integration

STUBBORN_SERVER = textwrap.dedent(
    """
    import http.server, os, signal, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.fork() == 0:  # a child in the same group, like a job consumer
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(600)
        sys.exit(0)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
    """
)


def test_a_group_that_ignores_sigterm_is_killed_whole(tmp_path):
    port = free_port()
    service = ServiceProcess(
        "stubborn", [sys.executable, "-c", STUBBORN_SERVER, str(port)], f"http://127.0.0.1:{port}/", tmp_path / "log"
    )
    service.start(timeout=30)
    group = service.process.pid
    assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
    service.stop(grace=0.5)
    assert not group_alive(group)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=5)


def test_a_service_that_exits_names_itself_and_quotes_its_log(tmp_path):
    command = [sys.executable, "-c", "import sys; print('cannot bind the port'); sys.exit(3)"]
    service = ServiceProcess("broken", command, f"http://127.0.0.1:{free_port()}/", tmp_path / "log")
    with pytest.raises(ServiceError, match=r"(?s)broken exited with 3.*cannot bind the port"):
        service.start(timeout=30)


def test_the_chroma_server_answers_and_stops(tmp_path):
    port = free_port()
    with chroma_server(tmp_path / "chroma", port, tmp_path / "chroma.log") as chroma:
        group = chroma.process.pid
        assert requests.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=5).status_code == 200
    assert not group_alive(group)
