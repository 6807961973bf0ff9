"""What the running code exports carries every metric the alerts and the dashboard name; retraining runs add up.

Real parts: the predictor server in a subprocess on a model trained by the real pipeline (the fixtures of
tests/serving/test_server.py), scraped over HTTP; the drift check on that model and its prediction log, writing
its text file; the retraining pipeline failing through kfp.local; a real Pushgateway (Debian package
`prometheus-pushgateway`; a skip when absent, a failure under CI=true) on a loopback port.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.conftest import SAMPLE, missing, seed_mlflow_store
from tests.integration.monitoring.test_observability import (
    DASHBOARDS,
    PROMETHEUS_DIR,
    PROMETHEUS_OWN,
    alert_rules,
    dashboard_queries,
    family_series,
    grafana_query_metrics,
    load_dashboard,
    promql_metrics,
)

# The trained home and the running server of the serving tests (module-scoped fixtures: trained once here too).
from tests.integration.serving.test_server import V1, Server, free_port, predict, server  # noqa: F401
from ticketflow.components.config import TicketflowConfig
from ticketflow.monitoring import metrics
from ticketflow.monitoring.drift import DriftResult, DriftThresholds
from ticketflow.monitoring.drift_check import export_drift_metrics, read_window, run_drift_check
from ticketflow.monitoring.retraining import count_retrain_run, retrain_result

RETRAIN_SERIES = metrics.counter_series(metrics.RETRAIN_RUNS)


def named_metrics() -> dict[str, set[str]]:
    """Metric name -> where it is named: every alert rule's expression and every dashboard query."""
    named: dict[str, set[str]] = {}
    for rule in alert_rules():
        for name in promql_metrics(rule["expr"]):
            named.setdefault(name, set()).add(f"alert {rule['alert']}")
    for path in DASHBOARDS:
        for where, query in dashboard_queries(load_dashboard(path)):
            for name in grafana_query_metrics(query):
                named.setdefault(name, set()).add(f"{path.name} {where}")
    return named


def exposed(text: str) -> tuple[set[str], list[Sample]]:
    """The series names an exposition declares (even a labelled family without samples yet), and its samples."""
    families = list(text_string_to_metric_families(text))
    names = {series for family in families for series in family_series(family.name, family.type)}
    return names, [sample for family in families for sample in family.samples]


def values(samples: list[Sample], name: str, **labels: str) -> list[float]:
    return [s.value for s in samples if s.name == name and labels.items() <= s.labels.items()]


def wait_for_logged(cfg: TicketflowConfig, count: int, timeout: float = 30) -> None:
    """Waits until the server's prediction log holds `count` tickets (its writer flushes every 0.5 s)."""
    deadline = time.monotonic() + timeout
    while len(read_window(cfg.prediction_log, 0, count)) < count:
        assert time.monotonic() < deadline, f"fewer than {count} tickets in the prediction log after {timeout} s"
        time.sleep(0.5)


def test_every_metric_the_alerts_and_the_dashboard_name_is_exported(
    server: Server,  # noqa: F811  # the imported fixtures
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tickets = pd.read_csv(SAMPLE, nrows=60)  # the sample ends with deliberately broken rows
    texts = (tickets["subject"] + ". " + tickets["body"]).tolist()
    response = predict(server, texts)
    assert response.status_code == 200, response.text
    assert requests.post(server.url + V1, json={"instances": []}, timeout=30).status_code == 400
    scraped_names, scraped = exposed(requests.get(server.url + "/metrics", timeout=30).text)

    cfg = TicketflowConfig(home=str(home))
    # mlflow.set_tracking_uri, which the drift check calls, also sets this variable: undo it after the test, or
    # every later subprocess (kfp.local tasks, the CLI) would use this home's registry.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", cfg.tracking_uri)
    wait_for_logged(cfg, len(texts))
    result, _ = run_drift_check(cfg, window_records=len(texts), thresholds=DriftThresholds(min_tickets=30))
    assert result.enough_data, result.reason
    assert export_drift_metrics(result, cfg.home) == str(home / "metrics" / "drift.prom")
    count_retrain_run("FAILED", cfg.home)
    pushed_names, pushed = exposed(
        (home / "metrics" / "drift.prom").read_text() + (home / "metrics" / "retrain.prom").read_text()
    )

    named = named_metrics()
    unexported = {
        name: sorted(where)
        for name, where in named.items()
        if name not in scraped_names | pushed_names | PROMETHEUS_OWN
    }
    assert not unexported, f"named but exported by nothing: {unexported}"
    # The ones this traffic and this check produce carry values too, not only a declaration.
    assert values(scraped, "ticketflow_tickets_total", model="ticket-classifier") == [len(texts)]
    assert values(scraped, "ticketflow_requests_rejected_total", reason="empty_batch") == [1]
    assert values(scraped, "ticketflow_model_info", model="ticket-classifier", version="1") == [1]
    assert values(scraped, "request_predict_seconds_count", model_name="ticket-classifier")
    for signal in ("descriptors", "prediction", "embedding", "confidence"):
        assert values(pushed, "ticketflow_drift_score", signal=signal), signal
        assert values(pushed, "ticketflow_drift_threshold", signal=signal), signal
    queues = {q["queue"] for q in result.queues}
    assert queues and {s.labels["queue"] for s in pushed if s.name == "ticketflow_drift_queue_share"} == queues
    assert values(pushed, "ticketflow_drift_detected") == [int(result.drift_detected)]
    assert values(pushed, "ticketflow_drift_window_tickets") == [len(texts)]
    assert values(pushed, RETRAIN_SERIES, result="failed") == [1]


def test_a_failed_retraining_run_is_counted_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_mlflow_db: Path
) -> None:
    """The retraining pipeline on a home without a champion: its first step fails, its exit task counts it."""
    from ticketflow.pipelines.drift import retraining_pipeline
    from ticketflow.pipelines.local_runner import PipelineFailedError, run_pipeline

    state = tmp_path / "home"
    seed_mlflow_store(state, empty_mlflow_db)  # an empty registry, without waiting for MLflow's migrations
    monkeypatch.setenv("TICKETFLOW_HOME", str(state))  # kfp.local's task processes inherit the environment
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the registry under that home, no other
    with pytest.raises(PipelineFailedError, match="assemble-retraining-data") as failure:
        run_pipeline(retraining_pipeline, {}, tmp_path / "runs")
    tasks_log = Path(re.search(r"The task log is (\S+);", str(failure.value)).group(1)).read_text()
    assert "no champion for ticket-classifier" in tasks_log
    assert "Executing task 'count-retrain-run'" in tasks_log
    _, published = exposed((state / "metrics" / "retrain.prom").read_text())
    assert values(published, RETRAIN_SERIES, result="failed") == [1]
    assert values(published, RETRAIN_SERIES, result="succeeded") == [0]


@pytest.mark.parametrize(
    ("state", "result"),
    [
        ("SUCCEEDED", "succeeded"),  # kfp.local, current backends
        ("COMPLETE", "succeeded"),  # backends reading ML Metadata
        ("FAILED", "failed"),
        ("CANCELED", "failed"),
        ("CANCELLED", "failed"),
        ("RUNNING", "failed"),  # a state a backend bug can leave: never a silent success
    ],
)
def test_final_states_map_to_results(state: str, result: str) -> None:
    assert retrain_result(state) == result


def test_retraining_runs_add_up_in_the_text_file(tmp_path: Path) -> None:
    states = ["SUCCEEDED", "FAILED", "COMPLETE", "CANCELED", "FAILED"]
    for state in states:
        totals = count_retrain_run(state, tmp_path)
    assert totals == {"succeeded": 2, "failed": 3}
    _, published = exposed((tmp_path / "metrics" / "retrain.prom").read_text())
    assert values(published, RETRAIN_SERIES, result="succeeded") == [2]
    assert values(published, RETRAIN_SERIES, result="failed") == [3]
    # A new state folder starts from nothing, though this process counted before.
    assert count_retrain_run("SUCCEEDED", tmp_path / "other") == {"succeeded": 1, "failed": 0}


# ---- a real Pushgateway ---------------------------------------------------------------------------------------
@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[str]:
    """A fresh Pushgateway on a free loopback port; yields its `host:port`."""
    binary = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
    if binary is None:
        missing("the Pushgateway is absent (Debian package `prometheus-pushgateway`; .ci/run installs it)")
    address = f"127.0.0.1:{free_port()}"
    log = (tmp_path / "pushgateway.log").open("w")
    # Its own persistence file: Debian's build persists to /var/lib/prometheus by default, across tests and runs.
    arguments = [binary, f"--web.listen-address={address}", f"--persistence.file={tmp_path / 'pushgateway.data'}"]
    proc = subprocess.Popen(arguments, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"http://{address}/-/ready", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "pushgateway.log").read_text()
            time.sleep(0.2)
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def gateway_samples(address: str) -> list[Sample]:
    return exposed(requests.get(f"http://{address}/metrics", timeout=30).text)[1]


def alert_tests(alert: str) -> list[list[tuple[str, dict[str, str]]]]:
    """The input series of each alerts_test.yml test of an alert, as (metric, labels) parsed from the series text."""
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())["tests"]
    out = []
    for test in tests:
        if {case["alertname"] for case in test["alert_rule_test"]} != {alert}:
            continue
        series = []
        for item in test["input_series"]:
            name, labels = re.fullmatch(r"(\w+)\{(.*)\}", item["series"]).groups()
            series.append((name, dict(re.findall(r'(\w+)="([^"]*)"', labels))))
        out.append(series)
    return out


def test_retraining_runs_add_up_on_a_pushgateway_beside_the_drift_metrics(pushgateway: str, tmp_path: Path) -> None:
    verdict = DriftResult(
        True,
        True,
        "drift in embedding",
        scores={"embedding": {"score": 0.3, "threshold": 0.1, "drifted": True}},
        queues=[{"queue": "Hardware", "share": 0.6, "reference_share": 0.2, "drifted": True}],
        window={"tickets": 150},
    )
    count_retrain_run("SUCCEEDED", tmp_path, pushgateway)
    assert export_drift_metrics(verdict, tmp_path, pushgateway) == f"pushgateway {pushgateway} (job ticketflow-drift)"
    assert count_retrain_run("FAILED", tmp_path, pushgateway) == {"succeeded": 1, "failed": 1}
    export_drift_metrics(verdict, tmp_path, pushgateway)  # a push replaces its own job's group only
    assert count_retrain_run("FAILED", tmp_path, pushgateway) == {"succeeded": 1, "failed": 2}
    assert not (tmp_path / "metrics").exists(), "with a Pushgateway nothing is written locally"

    samples = gateway_samples(pushgateway)
    retrain = {s.labels["result"]: (s.value, s.labels) for s in samples if s.name == RETRAIN_SERIES}
    assert {result: value for result, (value, _) in retrain.items()} == {"succeeded": 1, "failed": 2}
    assert values(samples, "ticketflow_drift_detected", job="ticketflow-drift", instance="") == [1]
    assert values(samples, "ticketflow_drift_score", job="ticketflow-drift", signal="embedding") == [0.3]
    # alerts_test.yml feeds RetrainFailed exactly the counter's series as the Pushgateway exposes them.
    pushed_series = sorted((RETRAIN_SERIES, sorted(labels.items())) for _, labels in retrain.values())
    assert alert_tests("RetrainFailed")
    for series in alert_tests("RetrainFailed"):
        assert sorted((name, sorted(labels.items())) for name, labels in series) == pushed_series
    # And the drift alerts' series carry the labels the drift check's push gets.
    drift_labels = {s.name: s.labels for s in samples if s.labels.get("job") == metrics.DRIFT_PUSH.job}
    for alert in ("DriftDetected", "DriftCheckNotRun"):
        for series in alert_tests(alert):
            for name, labels in series:
                assert labels == drift_labels[name], (alert, name, labels)
