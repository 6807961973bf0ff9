"""Prometheus config, alert rules and the Grafana dashboard agree with each other and with the metric objects.

- promtool accepts the config and the rules, and the rules' unit tests pass (promtool: Debian package
  `prometheus`; a skip when absent, a failure under CI=true);
- the scrape config's relabelling keeps the predictor pods of the rendered InferenceService;
- every metric a dashboard query or an alert names is defined by an object of `monitoring/metrics.py` (or by
  KServe), and metric objects are created there only, each by a literal call;
- the dashboard is well-formed: unique panel ids, a data source and a query on every panel, no overlaps.
What a running predictor and the drift check actually export is checked in test_metrics.py.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import missing
from ticketflow.monitoring import metrics

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS_DIR = ROOT / "monitoring" / "prometheus"
GRAFANA_DIR = ROOT / "monitoring" / "grafana"
DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
INFERENCE_SERVICE = ROOT / "manifests" / "base" / "inference-service.yaml"
PROMETHEUS_OWN = frozenset({"up"})  # series Prometheus writes itself for every target
PREDICTOR_JOB = "ticketflow-predictor"


# ---- promtool ------------------------------------------------------------------------------------------------
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        missing("promtool is absent (Debian package `prometheus`: apt-get install prometheus; .ci/run installs it)")
    return path


def run_promtool(*args: str | Path, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess:
    return subprocess.run(
        [promtool(), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_prometheus_config_passes_promtool(tmp_path):
    result = run_promtool("check", "config", "prometheus.yml")
    output = result.stdout + result.stderr
    if result.returncode == 0:
        return
    # Debian builds Prometheus without Kubernetes service discovery: its promtool rejects the field itself.
    # Check everything else with that discovery swapped for a static target; the Kubernetes part is checked
    # by test_scrape_config_keeps_the_predictor_pods.
    assert "field kubernetes_sd_configs not found" in output, output
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": ["kubernetes-sd.invalid:8080"]}]
    config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump(config))
    result = run_promtool("check", "config", copy)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_promtool():
    result = run_promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rule_unit_tests_pass():
    result = run_promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


# ---- scrape config ------------------------------------------------------------------------------------------
def relabel(labels: dict[str, str], configs: list[dict]) -> dict[str, str] | None:
    """Prometheus' relabelling (keep, drop, replace) of one target; None when the target is dropped."""
    labels = dict(labels)
    for config in configs:
        action = config.get("action", "replace")
        regex = re.compile(f"(?:{config.get('regex', '(.*)')})")
        value = config.get("separator", ";").join(labels.get(name, "") for name in config.get("source_labels", []))
        match = regex.fullmatch(value)
        if action == "keep" and match is None:
            return None
        if action == "drop" and match is not None:
            return None
        if action == "replace" and match is not None:
            replacement = re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", config.get("replacement", "$1"))
            result = match.expand(replacement)
            if result:
                labels[config["target_label"]] = result
            else:
                labels.pop(config["target_label"], None)
        if action not in ("keep", "drop", "replace"):
            raise NotImplementedError(action)
    return labels


def predictor_pod_target(address: str, **changes: str) -> dict[str, str]:
    """The labels Kubernetes pod discovery gives a pod of the rendered InferenceService."""
    isvc = yaml.safe_load(INFERENCE_SERVICE.read_text())
    annotations = isvc["spec"]["predictor"]["annotations"]
    labels = {
        "__address__": address,
        "__meta_kubernetes_namespace": isvc["metadata"]["namespace"],
        "__meta_kubernetes_pod_name": "ticket-classifier-predictor-7c9d8-x2x4q",
        "__meta_kubernetes_pod_phase": "Running",
        # KServe labels its pods with the InferenceService's name.
        "__meta_kubernetes_pod_label_serving_kserve_io_inferenceservice": isvc["metadata"]["name"],
    }
    for key, value in annotations.items():
        labels["__meta_kubernetes_pod_annotation_" + re.sub(r"[^A-Za-z0-9_]", "_", key)] = str(value)
    labels.update(changes)
    return labels


def scrape_job(name: str) -> dict:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    return next(job for job in config["scrape_configs"] if job["job_name"] == name)


def test_scrape_config_keeps_the_predictor_pods():
    job = scrape_job(PREDICTOR_JOB)
    isvc = yaml.safe_load(INFERENCE_SERVICE.read_text())
    [discovery] = job["kubernetes_sd_configs"]
    assert discovery["role"] == "pod"
    assert discovery["namespaces"]["names"] == [isvc["metadata"]["namespace"]]
    annotations = isvc["spec"]["predictor"]["annotations"]
    for address in ("10.244.0.7", "10.244.0.7:9000"):  # no declared port, another port: the annotation's wins
        target = relabel(predictor_pod_target(address), job["relabel_configs"])
        assert target is not None
        assert target["__address__"] == f"10.244.0.7:{annotations['prometheus.io/port']}"
        assert target["__metrics_path__"] == annotations["prometheus.io/path"]
        assert target["namespace"] == "ticketflow"
        assert target["pod"] == "ticket-classifier-predictor-7c9d8-x2x4q"


@pytest.mark.parametrize(
    "change",
    [
        {"__meta_kubernetes_pod_annotation_prometheus_io_scrape": "false"},
        {"__meta_kubernetes_pod_label_serving_kserve_io_inferenceservice": "another-model"},
        {"__meta_kubernetes_pod_phase": "Pending"},
    ],
)
def test_scrape_config_drops_other_pods(change):
    job = scrape_job(PREDICTOR_JOB)
    assert relabel(predictor_pod_target("10.244.0.7:8080", **change), job["relabel_configs"]) is None


def test_pushgateway_and_local_jobs():
    pushgateway = scrape_job("pushgateway")
    assert pushgateway["honor_labels"] is True
    assert pushgateway["static_configs"][0]["targets"] == ["pushgateway.ticketflow.svc:9091"]
    assert scrape_job("ticketflow-predictor-local")["static_configs"][0]["targets"] == ["127.0.0.1:8080"]


# ---- metric names in PromQL ---------------------------------------------------------------------------------
PROMQL_GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
PROMQL_KEYWORDS = PROMQL_GROUPING | {"and", "or", "unless", "offset", "bool", "inf", "nan"}


def promql_metrics(expr: str) -> set[str]:
    """The metric names a PromQL expression (possibly with Grafana variables) selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', " ", expr)  # string literals
    text = re.sub(r"\{[^{}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\[\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text)
    text = re.sub(r"\boffset\s+-?\w+|@\s*(?:start\(\)|end\(\)|[\d.]+)", " ", text)
    text = re.sub(r"\$\{[^}]*\}|\$\w+", " ", text)  # Grafana variables outside brackets
    names = re.findall(r"(?<![\w.:])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()", text)  # not a function call
    return {name for name in names if name.lower() not in PROMQL_KEYWORDS}


def grafana_query_metrics(query: str) -> set[str]:
    """The metrics a Grafana Prometheus query names, `label_values(metric, label)` included."""
    values = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query, flags=re.DOTALL)
    if values:
        return promql_metrics(values.group(1))
    if re.fullmatch(r"\s*label_values\(\s*\w+\s*\)\s*", query):
        return set()
    return promql_metrics(query)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        (
            'sum(rate(request_predict_seconds_count{model_name=~"$model"}[$__rate_interval]))',
            {"request_predict_seconds_count"},
        ),
        (
            "histogram_quantile(0.99, sum by (le, target) (rate(ticketflow_prediction_confidence_bucket[5m]))) > 1e-3",
            {"ticketflow_prediction_confidence_bucket"},
        ),
        (
            "sum by (target, label) (increase(a_total[$__range]))\n"
            "  / on (target) group_left\nsum by (target) (b_total)",
            {"a_total", "b_total"},
        ),
        ('up{job="x"} == 0 or absent(ticketflow_model_info)', {"up", "ticketflow_model_info"}),
        ("time() - max by (job) (last_seconds) > 43200", {"last_seconds"}),
        ('x_total{result="failed"} > 0 unless x_total{result="failed"} offset 1h', {"x_total"}),
        ("sum without (instance) (rate(c_total[5m] @ end())) > bool 0 and on() vector(1)", {"c_total"}),
        ('count({__name__=~"ticketflow_.+"})', set()),
        ("recording:rule:sum", {"recording:rule:sum"}),
    ],
)
def test_promql_metrics_extracts_metric_names(expr, expected):
    assert promql_metrics(expr) == expected


def test_grafana_label_values_query():
    assert grafana_query_metrics("label_values(ticketflow_model_info, model)") == {"ticketflow_model_info"}
    assert grafana_query_metrics('label_values(up{job="x"}, instance)') == {"up"}
    assert grafana_query_metrics("label_values(model)") == set()


SERIES_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}


def family_series(name: str, kind: str) -> set[str]:
    """The series names a metric family is exposed under, i.e. what PromQL selects (`x_total`, `x_bucket`, ...)."""
    return {name + suffix for suffix in SERIES_SUFFIXES.get(kind, ("",))}


def defined_series() -> set[str]:
    """Every series name the code's metric objects expose: the default registry once the server is imported (our
    predictor's and server's metrics, KServe's histograms) and the registries the batch jobs publish."""
    from prometheus_client import REGISTRY

    import ticketflow.serving.server  # noqa: F401  # registers the predictor's and KServe's metrics

    registries = (REGISTRY, metrics.DRIFT_REGISTRY, metrics.RETRAIN_REGISTRY)
    return {series for r in registries for family in r.collect() for series in family_series(family.name, family.type)}


def unknown_metrics(names: set[str]) -> set[str]:
    return names - defined_series() - PROMETHEUS_OWN


# ---- dashboards -----------------------------------------------------------------------------------------
def all_panels(panels: list[dict]) -> list[dict]:
    out = []
    for panel in panels:
        out.append(panel)
        out += all_panels(panel.get("panels", []))
    return out


def dashboard_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(where, query) for every panel target and every query variable."""
    queries = []
    for panel in all_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            queries.append((f"panel {panel['title']!r} {target.get('refId')}", target.get("expr", "")))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            queries.append((f"variable {variable['name']}", query["query"] if isinstance(query, dict) else query))
    return queries


def load_dashboard(path: Path) -> dict:
    return json.loads(path.read_text())


def test_there_is_a_dashboard():
    assert [p.name for p in DASHBOARDS] == ["ticketflow.json"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_queries_name_only_defined_metrics(path):
    dashboard = load_dashboard(path)
    queries = dashboard_queries(dashboard)
    assert queries
    problems = []
    for where, query in queries:
        names = grafana_query_metrics(query)
        if not names:
            problems.append(f"{where}: no metric found in {query!r}")
        if unknown := unknown_metrics(names):
            problems.append(f"{where}: {sorted(unknown)} defined by no metric object (monitoring/metrics.py)")
    assert not problems, "\n".join(problems)


GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "6h", "$model": ".*"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_queries_are_valid_promql(path, tmp_path):
    """promtool parses every panel query (as a recording rule), with Grafana's variables filled in."""
    rules = []
    for i, (_, query) in enumerate(dashboard_queries(load_dashboard(path))):
        if query.lstrip().startswith("label_values("):
            continue
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        assert "$" not in query, f"unknown Grafana variable in {query!r}"
        rules.append({"record": f"dashboard:query_{i}", "expr": query})
    rules_file = tmp_path / "dashboard_rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_promtool("check", "rules", rules_file)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_well_formed(path):
    dashboard = load_dashboard(path)
    assert dashboard["uid"] == "ticketflow"
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    data_source = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    panels = all_panels(dashboard["panels"])
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(i for i in ids if ids.count(i) > 1)}"
    taken: dict[tuple[int, int], str] = {}
    for panel in panels:
        where = f"panel {panel['id']} {panel.get('title')!r}"
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, where
        for cell in (
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        ):
            assert cell not in taken, f"{where} overlaps {taken[cell]}"
            taken[cell] = where
        if panel["type"] == "row":
            continue
        assert panel.get("datasource") == data_source, where
        targets = panel.get("targets", [])
        assert targets, f"{where} has no query"
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), where
        for target in targets:
            assert target.get("expr", "").strip(), where
            assert target.get("datasource", data_source) == data_source, where
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == data_source, variable["name"]


def test_grafana_provisioning():
    datasources = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasources["apiVersion"] == 1
    [source] = datasources["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True and source["url"].startswith("http")
    providers = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "ticketflow.yml").read_text())
    [provider] = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")


# ---- alert rules ------------------------------------------------------------------------------------------
def alert_rules() -> list[dict]:
    groups = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_alert_rules_name_only_defined_metrics():
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} >= {
        "HighErrorRate",
        "HighP99Latency",
        "DriftDetected",
        "HighNeedsReviewShare",
        "ModelNotReady",
        "DriftCheckNotRun",
        "RetrainFailed",
    }
    for rule in rules:
        names = promql_metrics(rule["expr"])
        assert names, rule["alert"]
        assert not unknown_metrics(names), f"{rule['alert']}: {sorted(unknown_metrics(names))} defined nowhere"


def test_alert_rules_are_complete():
    for rule in alert_rules():
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{rule['alert']}: needs a `for`"
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"].strip() and rule["annotations"]["description"].strip(), rule["alert"]


def test_every_alert_is_tested_firing_and_quiet():
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())["tests"]
    firing, quiet = set(), set()
    for test in tests:
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown quiet"


# ---- the metric objects ------------------------------------------------------------------------------------
PRODUCT_PACKAGES = ("components", "monitoring", "serving", "pipelines")
METRIC_CLASSES = frozenset({"Counter", "Gauge", "Histogram", "Summary", "Info", "Enum"})
METRICS_MODULE = ROOT / "monitoring" / "metrics.py"


def metric_objects() -> dict[str, object]:
    """The metric objects of monitoring/metrics.py, by family name (a counter's without `_total`)."""
    from prometheus_client.metrics import MetricWrapperBase

    objects = [value for value in vars(metrics).values() if isinstance(value, MetricWrapperBase)]
    return {obj.describe()[0].name: obj for obj in objects}


def creates_metric(func: ast.expr, imported: set[str]) -> bool:
    """Whether a call of `func` creates a prometheus_client metric (`Counter(...)`, `prometheus_client.Gauge(...)`)."""
    if isinstance(func, ast.Name):
        return func.id in imported
    return (
        isinstance(func, ast.Attribute)
        and func.attr in METRIC_CLASSES
        and isinstance(func.value, ast.Name)
        and func.value.id == "prometheus_client"
    )


def test_metric_objects_are_created_in_metrics_py_only_each_by_a_literal_call():
    for path in (p for package in PRODUCT_PACKAGES for p in sorted((ROOT / package).rglob("*.py"))):
        tree = ast.parse(path.read_text(), filename=str(path))
        imported = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("prometheus_client")
            for alias in node.names
            if alias.name in METRIC_CLASSES
        }
        calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and creates_metric(node.func, imported)]
        where = path.relative_to(ROOT)
        if path != METRICS_MODULE:
            assert not calls, f"{where}:{calls[0].lineno} creates a metric: define it in monitoring/metrics.py"
            continue
        assert len(calls) == len(metric_objects()), "one literal call per metric object"
        for call in calls:
            name = call.args[0] if call.args else None
            assert isinstance(name, ast.Constant) and isinstance(name.value, str), f"{where}:{call.lineno}"
            assert re.fullmatch(r"(ticketflow|ticketflow_drift|ticketflow_retrain)_[a-z0-9_]+", name.value)
            is_counter = isinstance(call.func, ast.Name) and call.func.id == "Counter"
            assert name.value.endswith("_total") == is_counter, f"{name.value}: counters, and only they, end in _total"


def test_each_metric_object_is_on_one_registry_by_who_exports_it():
    from prometheus_client import REGISTRY

    import ticketflow.serving.server  # noqa: F401  # the predictor and the server use their metrics

    on = {
        "default": {f.name for f in REGISTRY.collect() if f.name.startswith("ticketflow_")},
        "drift": {f.name for f in metrics.DRIFT_REGISTRY.collect()},
        "retrain": {f.name for f in metrics.RETRAIN_REGISTRY.collect()},
    }
    assert sum(map(len, on.values())) == len(set().union(*on.values())), "a metric on two registries"
    assert set().union(*on.values()) == set(metric_objects()), "a registered ticketflow metric not in metrics.py"
    assert all(name.startswith(("ticketflow_drift_", "ticketflow_live_")) for name in on["drift"]), on["drift"]
    assert on["retrain"] == {"ticketflow_retrain_runs"}
    assert metrics.DRIFT_PUSH.registry is metrics.DRIFT_REGISTRY
    assert metrics.RETRAIN_PUSH.registry is metrics.RETRAIN_REGISTRY
    assert metrics.DRIFT_PUSH.job != metrics.RETRAIN_PUSH.job, "a push replaces its job's whole group"


def test_family_series_names():
    assert family_series("request_predict_seconds", "histogram") >= {"request_predict_seconds_bucket"}
    assert "request_predict_seconds" not in family_series("request_predict_seconds", "histogram")
    assert family_series("ticketflow_tickets", "counter") == {"ticketflow_tickets_total", "ticketflow_tickets_created"}
    assert family_series("ticketflow_model_info", "gauge") == {"ticketflow_model_info"}
    assert metrics.counter_series(metrics.RETRAIN_RUNS) == "ticketflow_retrain_runs_total"
