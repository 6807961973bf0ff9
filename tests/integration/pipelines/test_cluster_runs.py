"""`make schedule` and `make submit` against a stand-in for the KFP API server (none can run here).

The real `kfp.Client` sends real HTTP requests to a small server that keeps experiments, recurring runs and runs in
memory and records every request: the tests check what a cluster would receive (the token, the namespace, the
service account, the name filter, the data URI) and that scheduling twice leaves one recurring run. An address
where nothing answers fails in seconds with a message naming it (a closed port; a socket that never answers).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import ROOT
from ticketflow.pipelines import schedule, submit
from ticketflow.pipelines.kfp_api import HEALTHZ_PATH, KfpUnreachableError, check_answers

API = "/apis/v2beta1"
TOKEN = "token-of-alice"  # a stand-in


class FakeKfpApi:
    """The state of the stand-in server and the requests it received."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.errors: list[str] = []
        self.experiments: list[dict] = []
        self.recurring_runs: list[dict] = []
        self.runs: list[dict] = []
        self.page_size = 1  # the server's own limit: listing must follow next_page_token
        self.lock = threading.Lock()

    def requests_to(self, method: str, path: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and r["path"] == path]

    def answer(self, method: str, path: str, query: dict[str, str], body: dict) -> tuple[int, dict]:
        if path == HEALTHZ_PATH:
            return 200, {"multi_user": False}
        if (method, path) == ("GET", f"{API}/experiments"):
            return 200, {"experiments": [e for e in self.experiments if matches(e, query)]}
        if (method, path) == ("POST", f"{API}/experiments"):
            experiment = {**body, "experiment_id": f"exp-{len(self.experiments) + 1}"}
            self.experiments.append(experiment)
            return 200, experiment
        if (method, path) == ("GET", f"{API}/recurringruns"):
            found = [
                r for r in self.recurring_runs if r["experiment_id"] == query["experiment_id"] and matches(r, query)
            ]
            start = int(query.get("page_token") or 0)
            size = min(int(query.get("page_size", 10)), self.page_size)
            more = start + size < len(found)
            return 200, {
                # `recurringRuns`: the field's name in backend/api/v2beta1/recurring_run.proto, unlike its neighbours'
                "recurringRuns": found[start : start + size],
                "next_page_token": str(start + size) if more else "",
            }
        if (method, path) == ("POST", f"{API}/recurringruns"):
            created = {**body, "recurring_run_id": f"rr-{len(self.requests)}"}
            self.recurring_runs.append(created)
            return 200, {key: created[key] for key in ("recurring_run_id", "display_name", "experiment_id")}
        if method == "DELETE" and path.startswith(f"{API}/recurringruns/"):
            gone = path.rsplit("/", 1)[1]
            self.recurring_runs = [r for r in self.recurring_runs if r["recurring_run_id"] != gone]
            return 200, {}
        if (method, path) == ("POST", f"{API}/runs"):
            run = {**body, "run_id": f"run-{len(self.runs) + 1}"}
            self.runs.append(run)
            return 200, {"run_id": run["run_id"], "display_name": run["display_name"]}
        return 404, {"message": f"no route {method} {path}"}


def matches(item: dict, query: dict[str, str]) -> bool:
    """KFP's list filter, as far as these tests use it: EQUALS (by name or enum number 1) on display_name."""
    if "filter" not in query:
        return True
    for predicate in json.loads(query["filter"])["predicates"]:
        if predicate["operation"] not in ("EQUALS", 1) or predicate["key"] != "display_name":
            raise ValueError(f"the stand-in does not know the filter {predicate}")
        if item.get("display_name") != predicate.get("string_value", predicate.get("stringValue")):
            return False
    return True


@pytest.fixture
def kfp_api() -> Iterator[tuple[str, FakeKfpApi]]:
    """The stand-in server's address and state."""
    state = FakeKfpApi()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            query = {key: values[0] for key, values in parse_qs(parts.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else {}
            with state.lock:
                state.requests.append(
                    {
                        "method": self.command,
                        "path": parts.path,
                        "query": query,
                        "body": body,
                        "authorization": self.headers.get("Authorization"),
                    }
                )
                try:
                    status, answer = state.answer(self.command, parts.path, query, body)
                except (KeyError, ValueError) as exc:  # a request the stand-in cannot take: fails the test
                    state.errors.append(f"{self.command} {self.path}: {exc!r}")
                    status, answer = 400, {"message": repr(exc)}
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = _serve  # noqa: N815

        def log_message(self, *args) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(f"{TOKEN}\n", encoding="utf-8")
    return path


def drift_check_args(host: str, token_file: Path, cron: str) -> list[str]:
    return ["--host", host, "--namespace", "team-a", "--token-file", str(token_file), "--cron", cron]


def test_scheduling_twice_leaves_one_recurring_run(kfp_api, token_file, monkeypatch, capsys) -> None:
    host, state = kfp_api
    monkeypatch.chdir(ROOT)  # pipelines/drift.yaml
    state.experiments.append({"experiment_id": "exp-0", "display_name": "ticketflow", "namespace": "team-a"})
    other = {"recurring_run_id": "rr-other", "display_name": "nightly-report", "experiment_id": "exp-0"}
    state.recurring_runs.append(other)
    for cron in ("0 0 */6 * * *", "0 30 */3 * * *"):
        argv = [*drift_check_args(host, token_file, cron), "--service-account", "ticketflow-runner"]
        assert schedule.main(argv) == 0
    assert state.errors == []
    (kept,) = [r for r in state.recurring_runs if r["display_name"] == "ticketflow-drift-check"]
    assert state.recurring_runs == [other, kept]
    assert kept["trigger"]["cron_schedule"]["cron"] == "0 30 */3 * * *"  # the newer one
    assert kept["service_account"] == "ticketflow-runner" and kept["experiment_id"] == "exp-0"
    assert kept["max_concurrency"] == 1 and kept["no_catchup"] is True and kept["mode"] == "ENABLE"
    (deleted,) = [r["path"] for r in state.requests if r["method"] == "DELETE"]
    first_id = deleted.rsplit("/", 1)[1]
    out = capsys.readouterr().out
    assert f"replacing {first_id}: {host}/#/recurringrun/details/{kept['recurring_run_id']}" in out
    # What a cluster would see: the token on every API call, the profile's namespace, the name filter.
    api_calls = [r for r in state.requests if r["path"] != HEALTHZ_PATH]
    assert api_calls and {r["authorization"] for r in api_calls} == {f"Bearer {TOKEN}"}
    assert {r["query"].get("namespace") for r in state.requests_to("GET", f"{API}/experiments")} == {"team-a"}
    listed = state.requests_to("GET", f"{API}/recurringruns")
    assert {r["query"]["filter"] for r in listed} == {schedule.name_filter("ticketflow-drift-check")}
    assert {r["query"]["experiment_id"] for r in listed} == {"exp-0"}


def test_submit_starts_one_training_run_and_prints_its_page(kfp_api, token_file, monkeypatch, capsys) -> None:
    host, state = kfp_api
    monkeypatch.chdir(ROOT)  # pipelines/training.yaml
    data = "minio://mlpipeline/tickets/export.csv"
    argv = ["--host", host, "--namespace", "team-a", "--token-file", str(token_file), "--data", data]
    assert submit.main([*argv, "--service-account", "ticketflow-runner"]) == 0
    assert state.errors == []
    (run,) = state.runs
    assert run["runtime_config"]["parameters"] == {submit.DATA_PARAMETER: data}  # the rest: compiled defaults
    assert run["service_account"] == "ticketflow-runner"
    spec = run["pipeline_spec"].get("pipeline_spec", run["pipeline_spec"])  # with a platform spec: both, by name
    assert spec["pipelineInfo"]["name"] == "ticketflow-training"
    (experiment,) = state.experiments
    assert experiment["display_name"] == "ticketflow" and experiment["namespace"] == "team-a"
    assert run["experiment_id"] == experiment["experiment_id"]
    assert f"training run {run['run_id']} started: {host}/#/runs/details/{run['run_id']}" in capsys.readouterr().out
    assert {r["authorization"] for r in state.requests if r["path"] != HEALTHZ_PATH} == {f"Bearer {TOKEN}"}


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_submit_hands_the_token_over_on_standard_input(kfp_api) -> None:
    host, state = kfp_api
    data = "minio://mlpipeline/tickets/export.csv"
    made = subprocess.run(
        ["make", "--no-print-directory", "submit", f"KFP_HOST={host}", f"DATA={data}", f"KFP_TOKEN={TOKEN}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert state.errors == []
    (run,) = state.runs
    assert run["runtime_config"]["parameters"] == {submit.DATA_PARAMETER: data}
    assert {r["authorization"] for r in state.requests if r["path"] != HEALTHZ_PATH} == {f"Bearer {TOKEN}"}
    assert f"{host}/#/runs/details/{run['run_id']}" in made.stdout


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the block ends: nothing listens there


@pytest.mark.parametrize("module", [submit, schedule], ids=["submit", "schedule"])
def test_a_host_nobody_answers_at_fails_at_once_naming_it(module, monkeypatch, capsys) -> None:
    monkeypatch.chdir(ROOT)
    host = f"http://127.0.0.1:{closed_port()}"
    argv = ["--host", host, *(["--data", "minio://mlpipeline/tickets/export.csv"] if module is submit else [])]
    started = time.monotonic()
    assert module.main(argv) == 1
    assert time.monotonic() - started < 5
    err = capsys.readouterr().err
    assert f"no Kubeflow Pipelines API answers at {host}" in err and "port-forward" in err


def test_a_host_that_never_answers_fails_within_the_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        host = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(KfpUnreachableError, match=f"no Kubeflow Pipelines API answers at {host} within 0.5 s"):
            check_answers(host, timeout=0.5)
        assert time.monotonic() - started < 3


def test_an_http_error_is_an_answer(kfp_api) -> None:
    host, _ = kfp_api
    check_answers(f"{host}/no-such-prefix")  # a 404 still proves the address is right: kfp.Client reports the rest
