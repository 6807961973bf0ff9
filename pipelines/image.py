"""The one image: every step of the compiled pipelines and every container of ours in a kustomize overlay run it.

The overlay's `images:` entry (manifests/overlays/minikube/kustomization.yaml) says which image that is. The
Makefile reads it (`IMAGE`, default: that entry); `make compile` writes it back and compiles the pipelines with it
(`TICKETFLOW_IMAGE`), so the committed `pipelines/*.yaml` and the overlay always name the same image, and
`make image IMAGE=…`, `make compile IMAGE=…` or `make deploy IMAGE=…` retag both at once (e.g. by commit:
`IMAGE=ticketflow:$(git rev-parse --short HEAD)`). A test checks every image in the compiled YAML against the
overlay's `images:` applied to the base's image name.

    python -m ticketflow.pipelines.image get [--overlay manifests/overlays/minikube]
    python -m ticketflow.pipelines.image set IMAGE [--overlay manifests/overlays/minikube]

The base (manifests/base) names `TicketflowConfig().image` (`ticketflow:dev`, what `minikube image build` tags);
the entry's `name` is that image's name without the tag, and kustomize rewrites every container that runs it.
Podman lists a local build as `localhost/ticketflow:dev`: a cluster that takes images from podman (Minikube's
podman driver, kind) knows it by that name, so there `IMAGE=localhost/ticketflow:dev`.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from ticketflow.components.config import TicketflowConfig

DEFAULT_OVERLAY = Path("manifests/overlays/minikube")

# Docker's reference grammar (distribution/reference), enough to refuse what no registry or runtime would take.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]+)?/)?"
_REFERENCE = re.compile(
    rf"^(?P<name>{_DOMAIN}{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


@dataclass(frozen=True)
class ImageReference:
    """An image as kustomize's `images:` entry holds it: a name and either a tag or a digest.

    Attributes:
        name: Repository, with the registry when there is one (`registry.example.com:5000/team/ticketflow`).
        tag: Tag (`dev`); empty when `digest` is set.
        digest: Content digest (`sha256:…`); empty when `tag` is set.
    """

    name: str
    tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, image: str) -> ImageReference:
        """Splits `name:tag` or `name@sha256:…`; a bare name means its `latest` tag, as `docker build -t` takes it.

        Raises:
            ValueError: Not an image reference, or both a tag and a digest (which one would run?).
        """
        found = _REFERENCE.match(image.strip())
        if not found:
            raise ValueError(f"{image!r} is not an image reference like ticketflow:dev or registry.example.com/t:1")
        name, tag, digest = found.group("name", "tag", "digest")
        if tag and digest:
            raise ValueError(f"{image!r} has a tag and a digest: give one (name:tag or name@sha256:…)")
        return cls(name=name, tag=tag or ("" if digest else "latest"), digest=digest or "")

    def __str__(self) -> str:
        return f"{self.name}@{self.digest}" if self.digest else f"{self.name}:{self.tag}"


def base_image_name() -> str:
    """The name (no tag) the base's containers run: `TicketflowConfig().image`'s, which the base is rendered from."""
    return ImageReference.parse(TicketflowConfig().image).name


def _kustomization(overlay: Path) -> Path:
    return overlay / "kustomization.yaml"


def overlay_image(overlay: Path = DEFAULT_OVERLAY) -> str:
    """The image the overlay gives the base's containers: its `images:` entry for the base's image name.

    Args:
        overlay: A kustomize overlay folder.

    Returns:
        The image, e.g. `ticketflow:dev`.

    Raises:
        ValueError: The overlay has no `images:` entry for the base's image name.
    """
    spec = yaml.safe_load(_kustomization(overlay).read_text(encoding="utf-8"))
    name = base_image_name()
    entries = [entry for entry in spec.get("images") or [] if entry.get("name") == name]
    if len(entries) != 1:
        raise ValueError(f"{_kustomization(overlay)}: needs one `images:` entry named {name!r}, has {len(entries)}")
    (entry,) = entries
    new_name = entry.get("newName", name)
    if entry.get("digest"):
        return f"{new_name}@{entry['digest']}"
    return f"{new_name}:{entry.get('newTag', ImageReference.parse(TicketflowConfig().image).tag)}"


def _entry_lines(image: ImageReference, indent: str) -> list[str]:
    lines = [f"{indent}- name: {base_image_name()}", f"{indent}  newName: {image.name}"]
    lines.append(f"{indent}  digest: {image.digest}" if image.digest else f"{indent}  newTag: {image.tag}")
    return lines


def set_overlay_image(image: str, overlay: Path = DEFAULT_OVERLAY) -> bool:
    """Makes the overlay's `images:` entry name `image`, keeping the file's comments and everything else.

    The Makefile reads the entry back with a line-oriented `awk` (no Python before `make install`), so the entry
    is always written the same way: `- name:`, `newName:`, then `newTag:` or `digest:`.

    Args:
        image: The image, e.g. `ticketflow:abc1234` or `registry.example.com/ticketflow@sha256:…`.
        overlay: A kustomize overlay folder.

    Returns:
        Whether the file changed.

    Raises:
        ValueError: Not an image reference, or the overlay has no `images:` block with exactly our entry.
    """
    reference = ImageReference.parse(image)
    path = _kustomization(overlay)
    text = path.read_text(encoding="utf-8")
    previous = yaml.safe_load(text)
    if [entry.get("name") for entry in previous.get("images") or []] != [base_image_name()]:
        raise ValueError(f"{path}: `images:` must hold exactly one entry, named {base_image_name()!r}")
    lines = text.splitlines()
    start = lines.index("images:") + 1  # a top-level key: the parse above found it
    end = start
    while end < len(lines) and lines[end][:1] in ("", " ", "#", "-"):
        end += 1  # the block runs until the next top-level key
    block = lines[start:end]
    comments = [line for line in block if line.lstrip().startswith("#")]
    entry = next(line for line in block if line.strip() and not line.lstrip().startswith("#"))
    indent = entry[: len(entry) - len(entry.lstrip())]
    new_text = "\n".join([*lines[:start], *comments, *_entry_lines(reference, indent), *lines[end:]]) + "\n"
    written = yaml.safe_load(new_text)
    if {**written, "images": None} != {**previous, "images": None}:
        raise ValueError(f"{path}: rewriting `images:` would change other keys; edit it by hand")
    if new_text == text:
        return False
    path.write_text(new_text, encoding="utf-8")
    if overlay_image(overlay) != str(reference):  # read back as kustomize will
        raise ValueError(f"{path}: wrote {overlay_image(overlay)!r} instead of {reference}")
    return True


def main(argv: list[str] | None = None) -> int:
    """Entry point: `get` prints the overlay's image, `set IMAGE` writes it."""
    parser = argparse.ArgumentParser(prog="python -m ticketflow.pipelines.image", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--overlay", type=Path, default=DEFAULT_OVERLAY, help="kustomize overlay (default: %(default)s)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("get", help="print the image the overlay names")
    setter = commands.add_parser("set", help="name IMAGE in the overlay's images: entry")
    setter.add_argument("image", help="e.g. ticketflow:dev, registry.example.com/ticketflow:1.2")
    args = parser.parse_args(argv)
    try:
        if args.command == "get":
            print(overlay_image(args.overlay))
        elif set_overlay_image(args.image, args.overlay):
            print(f"{_kustomization(args.overlay)} now names {ImageReference.parse(args.image)}")
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
