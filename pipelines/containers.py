"""Our image on a container engine, and kfp.local's DockerRunner on top of it (`make smoke-containers`).

The engine is Docker, or Podman where that is what the machine has; each pipeline step runs in a container.

Three things differ from kfp's stock DockerRunner, each seen on Podman 4.3 through its Docker-compatible API:
- kfp pulls any image the engine does not list under the exact name. Podman lists a local build as
  `localhost/<name>:<tag>`, and no registry is reachable here: `run_until_exit` never pulls and says so.
- kfp starts each container with `auto_remove=True`, streams its logs and then asks for its exit code. When the
  container is already gone, kfp reports SUCCESS (a step that died on a PermissionError passed), and Podman's
  500 "no such container" for a fast step's logs crashes the run (kfp expects Docker's 404). `run_until_exit`
  keeps the container until it has its real exit code and logs, then removes it.
- Containers inherit no environment and, without `network_mode`, get a network namespace of their own:
  `docker_runner` passes both.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The build mounts a one-wheel package index here when the torch wheel comes from a local folder (Podman only).
TORCH_INDEX_MOUNT = "/tmp/torchidx"  # nosec B108  # a path inside the build container, not on this machine
PIP_CERT_MOUNT = "/run/hostca.pem"
TORCH_VERSION = "2.13.0"
API_READY_TIMEOUT = 30.0


class ContainerEngineError(RuntimeError):
    """The container engine failed, or lacks what was asked for; the message says which command and why."""


@dataclass(frozen=True)
class ContainerEngine:
    """A container engine's command line (`docker`, `podman`, or a wrapper script of either).

    Attributes:
        command: The program and any leading arguments, e.g. ("podman",).
    """

    command: tuple[str, ...]

    @property
    def is_podman(self) -> bool:
        """Whether the engine is Podman (named so, or a wrapper named so)."""
        return "podman" in Path(self.command[0]).name

    def run(self, *args: str, timeout: float | None = 300, check: bool = True) -> subprocess.CompletedProcess:
        """Runs one engine command and captures its output.

        Raises:
            ContainerEngineError: It exited non-zero (with `check`), or did not finish in `timeout` seconds.
        """
        command = [*self.command, *args]
        try:
            done = subprocess.run(  # nosec B603  # the engine's own CLI, arguments as a list
                command, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as error:
            raise ContainerEngineError(f"`{shlex.join(command)}` did not finish within {timeout} s") from error
        if check and done.returncode != 0:
            raise ContainerEngineError(
                f"`{shlex.join(command)}` exited with {done.returncode}: {(done.stderr or done.stdout).strip()[-2000:]}"
            )
        return done

    def lists_image(self, image: str) -> bool:
        """Whether the engine lists `image` under exactly that name (`name:tag`)."""
        listed = self.run("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
        return image in listed

    def build(self, image: str, context: Path, build_args: dict[str, str], mounts: dict[Path, str], log: Path) -> None:
        """Builds `context`'s Dockerfile as `image`, on the host's network (the package index through its proxy).

        Args:
            image: The name to tag, e.g. `localhost/ticketflow:dev`.
            context: The build context (the repository).
            build_args: The Dockerfile's ARGs.
            mounts: Host paths mounted read-only into every RUN step, by their path in the build (Podman only).
            log: Where the build's output goes.

        Raises:
            ContainerEngineError: The build failed (the message ends with its last lines), or mounts on Docker.
        """
        if mounts and not self.is_podman:
            raise ContainerEngineError(
                "docker build cannot mount files into the build; leave PIP_CERT_FILE and TORCH_WHEEL_DIR empty"
            )
        command = [*self.command, "build", "--network=host", "-t", image]
        for host_path, build_path in mounts.items():
            command += ["-v", f"{host_path}:{build_path}:ro"]
        for name, value in build_args.items():
            command += ["--build-arg", f"{name}={value}"]
        with log.open("w") as out:
            done = subprocess.run(  # nosec B603  # the engine's own CLI, arguments as a list
                [*command, str(context)], stdout=out, stderr=subprocess.STDOUT, check=False
            )
        if done.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise ContainerEngineError(f"the image build failed ({log}):\n{tail}")

    @contextlib.contextmanager
    def api(self, folder: Path) -> Iterator[str | None]:
        """The engine's Docker-compatible API for the `docker` SDK, which kfp.local's DockerRunner uses.

        Docker: the daemon's own (None: DOCKER_HOST or the default socket). Podman: a `podman system service`
        on a socket in `folder`, stopped on exit.

        Yields:
            The value DOCKER_HOST must take, or None to keep the environment's.
        """
        if not self.is_podman:
            yield None
            return
        socket_path = folder / "podman.sock"
        log = (folder / "podman-api.log").open("w")
        service = subprocess.Popen(  # nosec B603  # the engine's own CLI, arguments as a list
            [*self.command, "system", "service", "--time=0", f"unix://{socket_path}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            url = f"unix://{socket_path}"
            _wait_for_api(url, service)
            yield url
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(service.pid, 15)
            try:
                service.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(service.pid, 9)
                service.wait(timeout=10)
            log.close()


def _wait_for_api(url: str, service: subprocess.Popen) -> None:
    import docker

    deadline = time.monotonic() + API_READY_TIMEOUT
    while True:
        if service.poll() is not None:
            raise ContainerEngineError(f"the engine's API service exited with {service.returncode}")
        try:
            with contextlib.closing(docker.DockerClient(base_url=url)) as client:
                client.ping()
            return
        except Exception as error:  # the socket is not there yet, or not answering yet
            if time.monotonic() > deadline:
                raise ContainerEngineError(f"the engine's API at {url} did not answer: {error}") from error
            time.sleep(0.3)


def detect_engine(preferred: str = "") -> ContainerEngine:
    """The container engine to use: `preferred` (a command line), else Docker if its daemon answers, else Podman.

    Args:
        preferred: e.g. "docker", "podman" or a wrapper script such as "../shared/tools/podman.sh"; empty detects.

    Returns:
        The engine.

    Raises:
        ContainerEngineError: Nothing usable was found.
    """
    if preferred.strip():
        return ContainerEngine(tuple(shlex.split(preferred)))
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "info"], capture_output=True, timeout=30, check=False).returncode == 0:  # nosec B603
        return ContainerEngine((docker,))
    podman = shutil.which("podman")
    if podman:
        return ContainerEngine((podman,))
    raise ContainerEngineError("no container engine: neither a Docker daemon that answers nor podman was found")


def torch_wheel_index(wheel_dir: Path, folder: Path) -> Path | None:
    """A one-wheel PEP 503 index of the CPU torch wheel in `wheel_dir`, for a build that cannot reach PyTorch's.

    Args:
        wheel_dir: A folder of wheels (e.g. pip's find-links), searched for torch-<TORCH_VERSION>+cpu for
            CPython 3.11 on x86_64 Linux.
        folder: Where the index is written (`<folder>/simple/torch/index.html` and the wheel).

    Returns:
        The index's root folder, or None when `wheel_dir` holds no such wheel.
    """
    wheels = sorted(wheel_dir.glob(f"torch-{TORCH_VERSION}+cpu-cp311-cp311-*linux*x86_64.whl"))
    if not wheels:
        return None
    wheel = wheels[-1]
    project = folder / "simple" / "torch"
    project.mkdir(parents=True, exist_ok=True)
    target = project / wheel.name
    if not target.exists():
        try:
            os.link(wheel, target)  # same disk: no copy of ~200 MB
        except OSError:
            shutil.copy2(wheel, target)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    name = html.escape(wheel.name)
    (project / "index.html").write_text(f'<a href="{name}#sha256={digest}">{name}</a>\n', encoding="utf-8")
    (folder / "simple" / "index.html").write_text('<a href="torch/">torch</a>\n', encoding="utf-8")
    return folder


def image_listed(client: Any, image: str) -> bool:
    """Whether a `docker` SDK client's engine lists `image` by that exact name or digest."""
    return any(image in (found.tags + found.attrs.get("RepoDigests", [])) for found in client.images.list())


def run_until_exit(client: Any, image: str, command: list[str], volumes: dict[str, Any], **run_args: Any) -> int:
    """kfp.local's `run_docker_container`, with the real exit code: runs a step's container to its end.

    Args:
        client: A `docker.DockerClient`.
        image: The step's image; never pulled.
        command: The step's command.
        volumes: kfp's volume mounts (the pipeline root).
        **run_args: The DockerRunner's container options (environment, network_mode, ...).

    Returns:
        The container's exit code.

    Raises:
        ContainerEngineError: The engine does not list `image` under that name.
    """
    from kfp.local.docker_task_handler import add_latest_tag_if_not_present

    image = add_latest_tag_if_not_present(image)
    if not image_listed(client, image):
        raise ContainerEngineError(
            f"the engine does not list the image {image!r}; it is not pulled (Podman lists a local build as "
            "localhost/<name>:<tag>: compile the pipeline for that name)"
        )
    container = client.containers.run(image=image, command=command, detach=True, volumes=volumes, **run_args)
    try:
        for chunk in container.logs(stream=True, follow=True):
            print(chunk.decode(errors="replace"), end="")
        return int(container.wait()["StatusCode"])
    finally:
        with contextlib.suppress(Exception):  # already gone is fine; a leftover is listed by `ps -a`
            container.remove(force=True)


@contextlib.contextmanager
def exit_code_runs() -> Iterator[None]:
    """Makes kfp.local's DockerRunner run each step with `run_until_exit`, for the duration of the block."""
    from kfp.local import docker_task_handler

    stock = docker_task_handler.run_docker_container
    docker_task_handler.run_docker_container = run_until_exit
    try:
        yield
    finally:
        docker_task_handler.run_docker_container = stock


def docker_runner(environment: dict[str, str]) -> Any:
    """kfp.local's DockerRunner on the host's network, with the steps' environment.

    Args:
        environment: The variables every step's container gets (service addresses, the database URL).

    Returns:
        A `kfp.local.DockerRunner`.
    """
    from kfp import local

    return local.DockerRunner(network_mode="host", environment=dict(environment))


def writable_pipeline_root(path: Path) -> Path:
    """Creates kfp.local's pipeline root so that the image's non-root user (uid 10001) can write in it.

    The root is the one host folder the step containers share (kfp mounts it at the same path): sticky and
    world-writable like /tmp, since the steps' uid is not this process's.
    """
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o1777)
    return path
