"""One image: every step of the compiled pipelines runs the image the Minikube overlay gives our containers.

The overlay's `images:` entry, applied to the base's image name as kustomize applies it, must be exactly the image
of every executor in `pipelines/*.yaml`; `ticketflow.pipelines.image` rewrites that entry (and only it) when
`make compile IMAGE=…` retags.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from ticketflow.components.config import TicketflowConfig
from ticketflow.pipelines.image import ImageReference, overlay_image, set_overlay_image

OVERLAY = ROOT / "manifests" / "overlays" / "minikube"
BASE = ROOT / "manifests" / "base"
COMPILED = [ROOT / "pipelines" / "training.yaml", ROOT / "pipelines" / "drift.yaml"]
DIGEST = "sha256:" + "0123456789abcdef" * 4


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def base_containers() -> list[dict]:
    """Every container of every object manifests/base lists (files only: the base has no sub-folders)."""
    resources = documents(BASE / "kustomization.yaml")[0]["resources"]
    found: list[dict] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("containers", "initContainers") and isinstance(value, list):
                    found.extend(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for resource in resources:
        for obj in documents(BASE / resource):
            walk(obj)
    return found


def kustomize_retag(image: str, entries: list[dict]) -> str:
    """What the overlay's `images:` makes of `image` (name[:tag] or name@digest), as kustomize's transformer does.

    Written apart from `ticketflow.pipelines.image` on purpose: it is the reference the product's reader is checked
    against. tests/integration/serving/test_manifests.py applies it to every container of an overlay.
    """
    name, at, digest = image.partition("@")
    if at:
        suffix = f"@{digest}"
    else:
        head, colon, tag = image.rpartition(":")
        name, suffix = (head, f":{tag}") if colon and "/" not in tag else (image, "")
    entry = next((entry for entry in entries if entry["name"] == name), None)
    if entry is None:
        return image
    if "digest" in entry:
        suffix = f"@{entry['digest']}"
    elif "newTag" in entry:
        suffix = f":{entry['newTag']}"
    return entry.get("newName", name) + suffix


def executor_images(path: Path) -> set[str]:
    executors = documents(path)[0]["deploymentSpec"]["executors"].values()
    assert all(set(executor) & {"container", "importer"} for executor in executors)  # an importer runs KFP's image
    return {executor["container"]["image"] for executor in executors if "container" in executor}


def test_the_base_runs_one_image_of_ours() -> None:
    ours = {c["image"] for c in base_containers() if "ticketflow" in c["image"].rsplit("/", 1)[-1]}
    assert ours == {TicketflowConfig().image} == {"ticketflow:dev"}  # the predictor, MLflow and ChromaDB


@pytest.mark.parametrize("compiled", COMPILED, ids=lambda path: path.name)
def test_every_compiled_step_runs_the_overlays_image(compiled: Path) -> None:
    entries = documents(OVERLAY / "kustomization.yaml")[0]["images"]
    base_image = TicketflowConfig().image  # what the base's containers name (the check above)
    # The entry names the base's image, or a retag (make compile IMAGE=…) would never reach the base's containers.
    assert [entry["name"] for entry in entries] == [ImageReference.parse(base_image).name]
    assert executor_images(compiled) == {kustomize_retag(base_image, entries)} == {overlay_image(OVERLAY)}


@pytest.mark.parametrize(
    "image",
    [
        "ticketflow:dev",
        "ticketflow:abc1234",
        "registry.example.com:5000/team/ticketflow:1.2.3",
        "localhost/ticketflow:dev",  # podman's name for a local build
        f"ghcr.io/ticketflow/ticketflow@{DIGEST}",
    ],
)
def test_set_overlay_image_rewrites_only_the_images_entry(tmp_path: Path, image: str) -> None:
    overlay = tmp_path / "minikube"
    shutil.copytree(OVERLAY, overlay)
    before = (overlay / "kustomization.yaml").read_text(encoding="utf-8")
    set_overlay_image(image, overlay)
    after = (overlay / "kustomization.yaml").read_text(encoding="utf-8")
    assert overlay_image(overlay) == image
    (entry,) = yaml.safe_load(after)["images"]
    assert kustomize_retag(TicketflowConfig().image, [entry]) == image
    assert {**yaml.safe_load(after), "images": None} == {**yaml.safe_load(before), "images": None}
    comments = [line for line in before.splitlines() if line.lstrip().startswith("#")]
    assert comments == [line for line in after.splitlines() if line.lstrip().startswith("#")]
    assert set_overlay_image(image, overlay) is False  # nothing left to change
    set_overlay_image(overlay_image(OVERLAY), overlay)
    assert (overlay / "kustomization.yaml").read_text(encoding="utf-8") == before  # and back, byte for byte


def test_a_bare_name_means_latest_as_docker_build_takes_it() -> None:
    assert str(ImageReference.parse("registry.example.com/ticketflow")) == "registry.example.com/ticketflow:latest"


@pytest.mark.parametrize(
    "image",
    ["", "Ticketflow:dev", "ticketflow:dev tag", "ticketflow:-x", f"ticketflow:dev@{DIGEST}", "ticketflow@md5:1"],
)
def test_what_no_registry_would_take_is_refused(tmp_path: Path, image: str) -> None:
    overlay = tmp_path / "minikube"
    shutil.copytree(OVERLAY, overlay)
    before = (overlay / "kustomization.yaml").read_text(encoding="utf-8")
    with pytest.raises(ValueError, match=r"image reference|tag and a digest"):
        set_overlay_image(image, overlay)
    assert (overlay / "kustomization.yaml").read_text(encoding="utf-8") == before


def test_an_overlay_with_other_image_entries_is_left_alone(tmp_path: Path) -> None:
    overlay = tmp_path / "minikube"
    shutil.copytree(OVERLAY, overlay)
    path = overlay / "kustomization.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("images:\n", "images:\n  - name: postgres\n    newTag: '17'\n"),
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="exactly one entry"):
        set_overlay_image("ticketflow:abc", overlay)
