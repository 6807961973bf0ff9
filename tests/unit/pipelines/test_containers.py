"""The container helpers that `make smoke-containers` runs kfp.local's DockerRunner with, without an engine.

The engine itself (a Docker daemon, or Podman's API) cannot be counted on where the suite runs: a small stand-in
of the `docker` SDK's client records what kfp's step runner asks of it. `make smoke-containers` runs the real thing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ticketflow.pipelines import containers
from ticketflow.pipelines.containers import ContainerEngine, ContainerEngineError, run_until_exit

pytestmark = pytest.mark.unit


class FakeImage:
    def __init__(self, tags: list[str]) -> None:
        self.tags = tags
        self.attrs = {"RepoDigests": []}


class FakeContainer:
    def __init__(self, exit_code: int, log: bytes) -> None:
        self.exit_code, self.log = exit_code, log
        self.removed = False
        self.waited = False

    def logs(self, stream: bool, follow: bool):
        assert stream and follow
        return iter([self.log])

    def wait(self) -> dict[str, int]:
        self.waited = True
        return {"StatusCode": self.exit_code}

    def remove(self, force: bool) -> None:
        self.removed = force


class FakeClient:
    """What the `docker` SDK's client offers kfp's step runner: images.list() and containers.run()."""

    def __init__(self, listed: list[str], exit_code: int = 0, log: bytes = b"") -> None:
        self.images = self
        self.containers = self
        self._listed = listed
        self.container = FakeContainer(exit_code, log)
        self.run_args: dict | None = None

    def list(self) -> list[FakeImage]:
        return [FakeImage(self._listed)]

    def run(self, **run_args) -> FakeContainer:
        self.run_args = run_args
        return self.container


def test_a_failed_step_reports_its_real_exit_code_and_its_container_is_removed(capsys):
    client = FakeClient(["localhost/ticketflow:dev"], exit_code=1, log=b"PermissionError: [Errno 13]\n")
    code = run_until_exit(client, "localhost/ticketflow:dev", ["python"], {"/root": {}}, network_mode="host")
    assert code == 1  # kfp's own runner says 0 (SUCCESS) when the container is gone before it asks
    assert client.container.waited and client.container.removed
    assert "PermissionError" in capsys.readouterr().out
    # kept until its exit code is read: no auto_remove, detached, kfp's options passed on
    assert "auto_remove" not in client.run_args
    assert client.run_args["detach"] is True and client.run_args["network_mode"] == "host"


def test_an_image_the_engine_does_not_list_is_not_pulled():
    client = FakeClient(["localhost/ticketflow:dev"])
    with pytest.raises(ContainerEngineError, match="localhost/<name>:<tag>"):
        run_until_exit(client, "ticketflow:dev", ["python"], {})
    assert client.run_args is None


def test_an_untagged_image_means_latest_as_kfp_has_it():
    client = FakeClient(["localhost/ticketflow:latest"])
    assert run_until_exit(client, "localhost/ticketflow", ["python"], {}) == 0


def test_the_replacement_holds_only_inside_the_block():
    from kfp.local import docker_task_handler

    stock = docker_task_handler.run_docker_container
    with containers.exit_code_runs():
        assert docker_task_handler.run_docker_container is run_until_exit
    assert docker_task_handler.run_docker_container is stock


def test_the_step_runner_uses_the_hosts_network_and_passes_the_environment():
    runner = containers.docker_runner({"TICKETFLOW_PREDICTION_LOG": "postgresql+psycopg://db/x"})
    assert runner.container_run_args["network_mode"] == "host"
    assert runner.container_run_args["environment"] == {"TICKETFLOW_PREDICTION_LOG": "postgresql+psycopg://db/x"}


def test_the_pipeline_root_is_writable_by_the_images_user(tmp_path):
    root = containers.writable_pipeline_root(tmp_path / "root")
    assert root.stat().st_mode & 0o7777 == 0o1777


def test_a_local_torch_wheel_becomes_a_one_wheel_index(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = wheels / f"torch-{containers.TORCH_VERSION}+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    wheel.write_bytes(b"not really a wheel")
    (wheels / "numpy-2.0.0-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"other")
    index = containers.torch_wheel_index(wheels, tmp_path / "index")
    page = (index / "simple" / "torch" / "index.html").read_text()
    digest = hashlib.sha256(b"not really a wheel").hexdigest()
    assert f'href="{wheel.name}#sha256={digest}"' in page
    assert (index / "simple" / "torch" / wheel.name).read_bytes() == b"not really a wheel"
    assert 'href="torch/"' in (index / "simple" / "index.html").read_text()


def test_no_torch_wheel_means_no_index(tmp_path):
    assert containers.torch_wheel_index(tmp_path, tmp_path / "index") is None


@pytest.mark.parametrize(
    ("command", "is_podman"),
    [("docker", False), ("podman", True), ("../shared/tools/podman.sh", True), ("/usr/bin/docker --debug", False)],
)
def test_the_engine_is_named_by_its_command(command, is_podman):
    assert containers.detect_engine(command).is_podman is is_podman


def test_docker_cannot_mount_files_into_a_build(tmp_path):
    with pytest.raises(ContainerEngineError, match="cannot mount"):
        ContainerEngine(("docker",)).build("x:y", tmp_path, {}, {Path("/etc/hosts"): "/run/x"}, tmp_path / "log")
