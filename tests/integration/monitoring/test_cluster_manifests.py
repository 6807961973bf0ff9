"""The monitoring stack's ConfigMaps (manifests/monitoring/config-maps.yaml) against monitoring/.

- the committed file is exactly what the renderer writes (never stale, never hand-edited);
- every embedded file is its monitoring/ source, byte for byte, except the Prometheus config, which is the
  repo's without the loopback-only jobs; the renderer keeps jobs with service discovery or real hosts;
- Prometheus' cluster config passes `promtool check config` with its rule files beside it, as mounted;
- under manifests/base's NetworkPolicies, Prometheus still reaches every pod and port its cluster config scrapes
  (the policy evaluator of tests/integration/serving/test_manifests.py).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.integration.monitoring.test_observability import run_promtool
from tests.integration.serving.test_manifests import (
    MINIKUBE,
    Pod,
    connection_allowed,
    deployed_objects,
    endpoint,
    network_policies,
    pods_of,
)
from ticketflow.monitoring.cluster_manifests import (
    DEFAULT_OUT_DIR,
    GRAFANA_DASHBOARDS_CONFIG_MAP,
    GRAFANA_DATASOURCES_CONFIG_MAP,
    GRAFANA_PROVIDERS_CONFIG_MAP,
    HEADER,
    MANIFEST_FILE,
    MONITORING_DIR,
    PROMETHEUS_CONFIG_MAP,
    build_config_maps,
    cluster_prometheus_config,
    main,
    render_config_maps,
    render_manifests,
)
from ticketflow.serving.inference_service import ServingDeployment

COMMITTED = DEFAULT_OUT_DIR / MANIFEST_FILE


def committed_config_maps() -> dict[str, dict[str, str]]:
    return {doc["metadata"]["name"]: doc["data"] for doc in yaml.safe_load_all(COMMITTED.read_text(encoding="utf-8"))}


def source(relative: str) -> str:
    return (MONITORING_DIR / relative).read_text(encoding="utf-8")


def test_committed_config_maps_are_what_the_renderer_writes():
    committed = COMMITTED.read_text(encoding="utf-8")
    assert committed == render_config_maps(), (
        "manifests/monitoring/config-maps.yaml is stale or hand-edited: run `make manifests`"
    )
    assert committed.startswith(HEADER)


def test_embedded_files_are_the_monitoring_files():
    maps = committed_config_maps()
    assert set(maps) == {
        PROMETHEUS_CONFIG_MAP,
        GRAFANA_DATASOURCES_CONFIG_MAP,
        GRAFANA_PROVIDERS_CONFIG_MAP,
        GRAFANA_DASHBOARDS_CONFIG_MAP,
    }
    assert maps[PROMETHEUS_CONFIG_MAP]["alerts.yml"] == source("prometheus/alerts.yml")
    assert set(maps[PROMETHEUS_CONFIG_MAP]) == {"prometheus.yml", "alerts.yml"}  # not alerts_test.yml
    assert maps[GRAFANA_DATASOURCES_CONFIG_MAP] == {
        "prometheus.yml": source("grafana/provisioning/datasources/prometheus.yml")
    }
    assert maps[GRAFANA_PROVIDERS_CONFIG_MAP] == {
        "ticketflow.yml": source("grafana/provisioning/dashboards/ticketflow.yml")
    }
    assert maps[GRAFANA_DASHBOARDS_CONFIG_MAP] == {"ticketflow.json": source("grafana/dashboards/ticketflow.json")}


def test_cluster_prometheus_config_is_the_repo_config_without_the_local_job():
    repo = yaml.safe_load(source("prometheus/prometheus.yml"))
    cluster = yaml.safe_load(committed_config_maps()[PROMETHEUS_CONFIG_MAP]["prometheus.yml"])
    assert {key: value for key, value in cluster.items() if key != "scrape_configs"} == {
        key: value for key, value in repo.items() if key != "scrape_configs"
    }
    kept = [job for job in repo["scrape_configs"] if job["job_name"] != "ticketflow-predictor-local"]
    assert len(kept) == len(repo["scrape_configs"]) - 1
    assert cluster["scrape_configs"] == kept
    assert [job["job_name"] for job in cluster["scrape_configs"]] == ["ticketflow-predictor", "pushgateway"]


@pytest.mark.parametrize(
    ("job", "kept"),
    [
        ({"static_configs": [{"targets": ["127.0.0.1:8080"]}]}, False),
        ({"static_configs": [{"targets": ["localhost:9100"]}, {"targets": ["[::1]:9100"]}]}, False),
        ({"static_configs": [{"targets": ["127.0.0.1:8080", "pushgateway.ticketflow.svc:9091"]}]}, True),
        ({"static_configs": [{"targets": ["127.0.0.10:8080"]}]}, True),  # a host name is compared whole
        ({"kubernetes_sd_configs": [{"role": "pod"}], "static_configs": [{"targets": ["127.0.0.1:1"]}]}, True),
        ({"static_configs": [{"targets": []}]}, True),
    ],
)
def test_only_loopback_only_jobs_are_left_out(job, kept):
    config = {"global": {"scrape_interval": "15s"}, "scrape_configs": [{"job_name": "probe", **job}]}
    cluster = yaml.safe_load(cluster_prometheus_config(yaml.safe_dump(config)))
    assert (cluster["scrape_configs"] == [config["scrape_configs"][0]]) is kept


def copy_monitoring(tmp_path: Path) -> Path:
    folder = tmp_path / "monitoring"
    for part in ("prometheus", "grafana"):
        shutil.copytree(MONITORING_DIR / part, folder / part)
    return folder


def test_rule_files_follow_the_config(tmp_path: Path):
    folder = copy_monitoring(tmp_path)
    config_path = folder / "prometheus" / "prometheus.yml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    config["rule_files"] = ["alerts.yml", "extra/*.yml"]
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    (folder / "prometheus" / "extra").mkdir()
    (folder / "prometheus" / "extra" / "recording.yml").write_text("groups: []\n", encoding="utf-8")
    [prometheus_map] = [m for m in build_config_maps(folder) if m["metadata"]["name"] == PROMETHEUS_CONFIG_MAP]
    assert set(prometheus_map["data"]) == {"prometheus.yml", "alerts.yml", "recording.yml"}

    config["rule_files"] = ["missing.yml"]
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    with pytest.raises(FileNotFoundError, match=r"missing\.yml"):
        build_config_maps(folder)


def test_no_dashboard_is_an_error(tmp_path: Path):
    folder = copy_monitoring(tmp_path)
    for dashboard in (folder / "grafana" / "dashboards").glob("*.json"):
        dashboard.unlink()
    with pytest.raises(FileNotFoundError, match="dashboards"):
        build_config_maps(folder)


def test_render_manifests_and_the_command_line_write_the_same_file(tmp_path: Path):
    path = render_manifests(tmp_path / "out")
    assert path == tmp_path / "out" / MANIFEST_FILE
    assert [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))] == build_config_maps()
    assert main(["--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / MANIFEST_FILE).read_text(encoding="utf-8") == path.read_text(encoding="utf-8")


def test_cluster_prometheus_config_passes_promtool(tmp_path: Path):
    """The config and rule files as Prometheus sees them: all in one folder (the ConfigMap's mount)."""
    data = committed_config_maps()[PROMETHEUS_CONFIG_MAP]
    for name, text in data.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    result = run_promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        # Debian's promtool is built without Kubernetes service discovery (see test_observability): check the
        # rest with that discovery swapped for a static target.
        assert "field kubernetes_sd_configs not found" in output, output
        config = yaml.safe_load(data["prometheus.yml"])
        for job in config["scrape_configs"]:
            if job.pop("kubernetes_sd_configs", None) is not None:
                job["static_configs"] = [{"targets": ["kubernetes-sd.invalid:8080"]}]
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
        result = run_promtool("check", "config", "prometheus.yml", cwd=tmp_path)
        output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "alerts.yml" in output and "SUCCESS" in output  # the rule file was found and checked too


def _meta_name(key: str) -> str:
    """A label or annotation name as Prometheus' pod discovery spells it in `__meta_…` labels."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


def discovered_metadata(pod: Pod) -> dict[str, str]:
    """The `__meta_kubernetes_*` labels Prometheus' pod discovery gives a running pod (those relabelling reads)."""
    meta = {"__meta_kubernetes_namespace": pod.namespace, "__meta_kubernetes_pod_phase": "Running"}
    meta.update({f"__meta_kubernetes_pod_label_{_meta_name(k)}": v for k, v in pod.labels.items()})
    meta.update({f"__meta_kubernetes_pod_annotation_{_meta_name(k)}": v for k, v in pod.annotations.items()})
    return meta


def kept_by(relabel_configs: list[dict], meta: dict[str, str]) -> bool:
    """Whether the `keep` and `drop` steps of a job's relabelling keep a discovered target (anchored regexes)."""
    for step in relabel_configs:
        value = step.get("separator", ";").join(meta.get(label, "") for label in step.get("source_labels", []))
        matched = re.fullmatch(step.get("regex", "(.*)"), value) is not None
        if (step.get("action") == "keep" and not matched) or (step.get("action") == "drop" and matched):
            return False
    return True


def scrape_targets(objects: list[dict]) -> dict[str, list[tuple[Pod, int]]]:
    """Every pod and port the cluster Prometheus scrapes, by job: static targets through their Service, discovered
    pods through the job's relabelling (port from the `prometheus.io/port` annotation, as the job rewrites it)."""
    config = yaml.safe_load(committed_config_maps()[PROMETHEUS_CONFIG_MAP]["prometheus.yml"])
    pods = pods_of(objects)
    targets: dict[str, list[tuple[Pod, int]]] = {}
    for job in config["scrape_configs"]:
        found = targets.setdefault(job["job_name"], [])
        for group in job.get("static_configs", []):
            found += [endpoint(target, objects) for target in group["targets"]]
        for discovery in job.get("kubernetes_sd_configs", []):
            assert discovery["role"] == "pod"
            for pod in pods.values():
                if pod.namespace in discovery["namespaces"]["names"] and kept_by(
                    job["relabel_configs"], discovered_metadata(pod)
                ):
                    found.append((pod, int(pod.annotations["prometheus.io/port"])))
    return targets


def test_prometheus_reaches_every_target_despite_the_network_policies():
    """The NetworkPolicies (manifests/base) must not cut Prometheus off: it still scrapes the predictor's pods and
    the Pushgateway, and nothing it scrapes is one of the three stores the policies close."""
    objects = deployed_objects(MINIKUBE)
    prometheus = pods_of(objects)["prometheus"]
    targets = scrape_targets(objects)
    assert {job: sorted(pod.name for pod, _ in found) for job, found in targets.items()} == {
        "ticketflow-predictor": [ServingDeployment().name],
        "pushgateway": ["pushgateway"],
    }
    policies = network_policies(objects)
    assert policies  # the policies are there, and still let these through
    for job, found in targets.items():
        for pod, port in found:
            assert connection_allowed(policies, prometheus, pod, port), (job, pod.name, port)
