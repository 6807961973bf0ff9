"""`make smoke-containers`: the whole loop with every pipeline step in a fresh container of our image.

The cluster form without a cluster. Steps share nothing but kfp.local's pipeline root (the stand-in for KFP's
artifact store); PostgreSQL, the MLflow tracking server (backend in PostgreSQL, artifacts served by MLflow) and
ChromaDB run on this machine and are reached over the network (host networking), as the Services are on Minikube.

1. image: builds the Dockerfile with Docker or Podman (`ticketflow.pipelines.containers`), from the lock.
2. services: PostgreSQL, MLflow and ChromaDB on free loopback ports (`ticketflow.pipelines.local_services`).
3. training: the training pipeline through kfp.local's DockerRunner, on the bundled sample without the
   "HR Support" queue; the export enters through the pipeline's `dsl.importer` from a file in the pipeline root.
4. serving: the predictor in a container of the image; tickets in, answers checked, rows counted in PostgreSQL.
5. drift: the drift pipeline the same way, on a window of HR tickets the model never saw (agents label part of
   them): drift is read from PostgreSQL, the retraining gets its data as an artifact, `champion` moves, and the
   predictor serves the new version.
Each stage is verified in the stores themselves (MLflow's versions and aliases, the Chroma collection, SQL
counts), not by a runner's status. The last line of stdout is one JSON object with each stage's result and
time; everything started is removed at the end, also after a failure.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import requests

from ticketflow.components.config import (
    TicketflowConfig,
    environment_with,
    export_library_variable,
    export_to_environment,
)
from ticketflow.pipelines.containers import (
    PIP_CERT_MOUNT,
    TORCH_INDEX_MOUNT,
    ContainerEngine,
    ContainerEngineError,
    detect_engine,
    docker_runner,
    exit_code_runs,
    torch_wheel_index,
    writable_pipeline_root,
)
from ticketflow.pipelines.demo_drift import NEW_TOPIC, generated_tickets, send
from ticketflow.pipelines.local_services import PostgresServer, chroma_server, free_port, mlflow_server

ROOT = Path(__file__).resolve().parents[1]
MODEL = TicketflowConfig().registered_model_name
ALIAS = TicketflowConfig().champion_alias
DEFAULT_IMAGE = "localhost/ticketflow:dev"
# Tried in order when no base image is given: the Dockerfile's default, then one built here from Debian packages.
UPSTREAM_BASE = "python:3.11-slim"
LOCAL_BASE = "localhost/python-base:bookworm"
LABELLED = 40  # HR tickets agents label through /v1/feedback before the drift check
READY_TIMEOUT = 600.0  # seconds for the predictor container to load the champion (~1 min; far more on a busy machine)
RELOAD_SECONDS = 5  # the predictor container's reload interval: how soon it notices that `champion` moved
(MLFLOW_VARIABLE, *_) = reversed(TicketflowConfig.env_names("mlflow_tracking_uri"))  # MLFLOW_TRACKING_URI
(VECTOR_STORE_VARIABLE,) = TicketflowConfig.env_names("vector_store_uri")
(DATABASE_VARIABLE,) = TicketflowConfig.env_names("prediction_log_uri")
(TOKEN_VARIABLE,) = TicketflowConfig.env_names("api_token")


class SmokeCheckError(AssertionError):
    """What a store showed differs from what the stage should have left there."""


def expect(condition: bool, message: str) -> None:
    """Fails the stage with `message` unless `condition` holds."""
    if not condition:
        raise SmokeCheckError(message)


def step(message: str) -> None:
    """A progress line on the terminal (stderr: stdout ends with the JSON result)."""
    print(f"==> {message}", file=sys.stderr, flush=True)


def stopping(name: str, stop) -> Callable[[], None]:
    """A clean-up callback that says what it stopped and how long that took."""

    def timed_stop() -> None:
        started = time.perf_counter()
        stop()
        step(f"stopped {name} in {time.perf_counter() - started:.1f} s")

    return timed_stop


class SmokeReport:
    """Each stage's verdict, time and evidence, printed as one JSON object at the end."""

    def __init__(self) -> None:
        self.stages: dict[str, dict[str, object]] = {}
        self.started = time.perf_counter()

    @property
    def ok(self) -> bool:
        """Whether every stage that ran passed."""
        return all(stage["ok"] for stage in self.stages.values())

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[dict[str, object]]:
        """Times a stage; the block fills the yielded dict with evidence.

        An exception fails the stage and is re-raised: later stages depend on this one.
        """
        evidence: dict[str, object] = {}
        step(name)
        started = time.perf_counter()
        try:
            yield evidence
        except BaseException as error:
            self.stages[name] = {
                "ok": False,
                "seconds": round(time.perf_counter() - started, 1),
                "error": f"{type(error).__name__}: {error}"[-3000:],
                **evidence,
            }
            raise
        self.stages[name] = {"ok": True, "seconds": round(time.perf_counter() - started, 1), **evidence}
        step(f"{name}: ok in {self.stages[name]['seconds']} s")

    def to_json(self) -> str:
        """The one-line result."""
        total = round(time.perf_counter() - self.started, 1)
        return json.dumps({"ok": self.ok, "seconds": total, "stages": self.stages})


# --- 1. image ---------------------------------------------------------------------------------------------------


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (its sources), else deb.debian.org."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if path.is_file():
            found = re.search(r"(?:^deb|^URIs:)\s+(?:\[[^]]*\]\s+)?(https?://\S*debian\S*)", path.read_text(), re.M)
            if found:
                return found.group(1).rstrip("/")
    return "http://deb.debian.org/debian"


def build_debian_base(engine: ContainerEngine, folder: Path) -> str:
    """A base image made from Debian's own packages (bookworm's Python 3.11), for machines without a registry.

    Args:
        engine: The container engine.
        folder: Scratch space for the root file system (~400 MB, deleted afterwards).

    Returns:
        Its name, `LOCAL_BASE`.

    Raises:
        ContainerEngineError: debootstrap is missing or failed.
    """
    if shutil.which("debootstrap") is None:
        raise ContainerEngineError(
            f"no base image: {UPSTREAM_BASE} cannot be pulled and debootstrap is not installed to make {LOCAL_BASE}; "
            "install debootstrap, or pass BASE_IMAGE=<an image with python3.11 and venv>"
        )
    rootfs = folder / "rootfs"
    step(f"building the base image {LOCAL_BASE} with debootstrap ({debian_mirror()})")
    subprocess.run(  # nosec B603 B607  # debootstrap from PATH, arguments as a list
        [
            "debootstrap",
            "--variant=minbase",
            "--include=python3,python3-venv,ca-certificates",
            "bookworm",
            str(rootfs),
            debian_mirror(),
        ],
        check=True,
        capture_output=True,
        timeout=1800,
    )
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for item in (rootfs / cache).glob("*"):
            if item.is_file():
                item.unlink()
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)  # nosec B603 B607
    subprocess.run(  # nosec B603  # the engine's own CLI
        [*engine.command, "import", "--change", 'CMD ["/bin/bash"]', "-", LOCAL_BASE],
        stdin=tar.stdout,
        check=True,
        capture_output=True,
        timeout=600,
    )
    tar.wait()
    shutil.rmtree(rootfs, ignore_errors=True)
    return LOCAL_BASE


def choose_base_image(engine: ContainerEngine, folder: Path) -> str:
    """The Dockerfile's base: python:3.11-slim when listed or pullable, else `LOCAL_BASE` (built when missing)."""
    for candidate in (UPSTREAM_BASE, f"docker.io/library/{UPSTREAM_BASE}", LOCAL_BASE):
        if engine.lists_image(candidate):
            return candidate
    if engine.run("pull", UPSTREAM_BASE, check=False, timeout=300).returncode == 0:
        return UPSTREAM_BASE
    return build_debian_base(engine, folder)


def build_image(args: argparse.Namespace, engine: ContainerEngine, folder: Path, evidence: dict) -> None:
    """Stage 1: builds the image (unless asked to reuse a listed one) and checks the engine lists it by name."""
    evidence.update(engine=" ".join(engine.command), image=args.image)
    if args.skip_build and engine.lists_image(args.image):
        evidence["built"] = False
        return
    base = args.base_image or choose_base_image(engine, folder)
    commit = subprocess.run(  # nosec B603 B607  # git from PATH
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    build_args = {"BASE_IMAGE": base, "GIT_COMMIT": commit or "unknown"}
    mounts: dict[Path, str] = {}
    if engine.is_podman and args.pip_cert and Path(args.pip_cert).is_file():
        mounts[Path(args.pip_cert).resolve()] = PIP_CERT_MOUNT
        build_args["PIP_CERT"] = PIP_CERT_MOUNT
    index = torch_wheel_index(Path(args.torch_wheel_dir), folder / "torchidx") if args.torch_wheel_dir else None
    if engine.is_podman and index is not None:
        mounts[index] = TORCH_INDEX_MOUNT
        build_args["TORCH_INDEX_URL"] = f"file://{TORCH_INDEX_MOUNT}/simple"
    step(f"building {args.image} from {base} (log: {folder / 'build.log'}; from scratch about 10 minutes)")
    build_log = folder / "build.log"
    try:
        engine.build(args.image, ROOT, build_args, mounts, build_log)
    finally:
        if args.keep_logs:
            shutil.copy2(build_log, Path(args.keep_logs) / "build.log")
    expect(engine.lists_image(args.image), f"the engine does not list {args.image} after the build")
    evidence.update(built=True, base_image=base, local_torch_wheel=index is not None, commit=commit)


# --- 2. services ------------------------------------------------------------------------------------------------


class Services:
    """PostgreSQL, MLflow and ChromaDB on 127.0.0.1, and the environment that points a container at them."""

    def __init__(self, folder: Path, cleanup: contextlib.ExitStack) -> None:
        self.postgres = PostgresServer()
        cleanup.callback(stopping("PostgreSQL", self.postgres.cleanup))
        self.postgres.start()
        self.postgres.create_database("mlflow")
        self.database_url = self.postgres.create_database("ticketflow")
        self.mlflow = mlflow_server(
            self.postgres.url("mlflow"), folder / "mlflow-artifacts", free_port(), folder / "mlflow.log"
        )
        cleanup.callback(stopping("MLflow", self.mlflow.stop))
        self.chroma = chroma_server(folder / "chroma", free_port(), folder / "chroma.log")
        cleanup.callback(stopping("ChromaDB", self.chroma.stop))
        self.chroma.start()
        self.mlflow.start()
        self.mlflow_url = self.mlflow.health_url.removesuffix("/health")
        self.chroma_url = self.chroma.health_url.removesuffix("/api/v2/heartbeat")

    def environment(self) -> dict[str, str]:
        """What every step container and the predictor container get: where the three services are."""
        return {
            MLFLOW_VARIABLE: self.mlflow_url,
            VECTOR_STORE_VARIABLE: self.chroma_url,
            DATABASE_VARIABLE: self.database_url,
        }

    def count(self, table: str) -> int:
        """Tickets in one of the prediction log's tables (feedback has a row per ticket and target), per PostgreSQL."""
        expect(table in ("predictions", "feedback"), f"unknown table {table}")
        query = f"SELECT count(DISTINCT ticket_id) FROM {table}"  # nosec B608  # one of two fixed table names
        with psycopg.connect(self.postgres.conninfo("ticketflow")) as connection:
            return int(connection.execute(query).fetchone()[0])

    def champion(self):
        """The model version behind `champion`, read from the MLflow server."""
        from mlflow import MlflowClient

        return MlflowClient(self.mlflow_url).get_model_version_by_alias(MODEL, ALIAS)

    def versions(self) -> list[int]:
        """Every registered version's number."""
        from mlflow import MlflowClient

        found = MlflowClient(self.mlflow_url).search_model_versions(f"name = '{MODEL}'")
        return sorted(int(version.version) for version in found)

    def collection_size(self, name: str) -> int:
        """Vectors in a Chroma collection, read from the Chroma server."""
        import chromadb

        host, port = self.chroma_url.removeprefix("http://").split(":")
        return chromadb.HttpClient(host=host, port=int(port)).get_collection(name).count()


# --- 3. and 5. pipelines in containers ----------------------------------------------------------------------------


def run_in_containers(pipeline, arguments: dict[str, object], root: Path, environment: dict[str, str], verbose: bool):
    """Runs a pipeline through kfp.local's DockerRunner (each step in a fresh container of the image)."""
    from ticketflow.pipelines.local_runner import run_pipeline

    with exit_code_runs():
        run = run_pipeline(pipeline, arguments, root, verbose=verbose, runner=docker_runner(environment))
    return json.loads(run.output), run


def train(services: Services, root: Path, verbose: bool, evidence: dict) -> dict[str, object]:
    """Stage 3: the training pipeline in containers, on the sample without the new topic."""
    from ticketflow.pipelines.training import training_pipeline

    sample = list(csv.DictReader((ROOT / "data" / "sample_tickets.csv").open(encoding="utf-8")))
    export = root / "input" / "tickets-without-hr.csv"
    export.parent.mkdir(exist_ok=True)
    with export.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(sample[0]))
        writer.writeheader()
        writer.writerows(row for row in sample if row["category"] != NEW_TOPIC and None not in row)
    summary, run = run_in_containers(
        training_pipeline,
        {"data_uri": str(export), "mlflow_tracking_uri": services.mlflow_url, "vector_store_uri": services.chroma_url},
        root,
        services.environment(),
        verbose,
    )
    champion = services.champion()
    expect(champion.status == "READY", f"champion v{champion.version} is {champion.status}, not READY")
    expect(str(champion.version) == str(summary["model_version"]), f"champion is v{champion.version}")
    collection = champion.tags.get("collection", "")
    vectors = services.collection_size(collection)
    expect(vectors > 0, f"the Chroma collection {collection!r} is empty")
    evidence.update(
        rows_read=summary["rows_read"],
        rows_rejected=summary["rows_rejected"],
        model_version=champion.version,
        champion=champion.version,
        collection=collection,
        vectors=vectors,
        category_macro_f1=summary["metrics"]["category"]["macro_f1"],
        run_folder=str(run.run_dir),
    )
    return summary


# --- 4. the predictor in a container ------------------------------------------------------------------------------


class Predictor:
    """The image's `ticketflow serve` in a container on the host's network, removed on cleanup."""

    def __init__(self, engine: ContainerEngine, image: str, environment: dict[str, str], cleanup: contextlib.ExitStack):
        self.engine = engine
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_urlsafe(16)
        self.name = f"ticketflow-smoke-predictor-{os.getpid()}"
        # The addresses inline; the token from the engine command's own environment (`-e NAME` without a value),
        # so that it stays off a command line that `ps` shows.
        options = [arg for name, value in environment.items() for arg in ("-e", f"{name}={value}")]
        serve = ["ticketflow", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        command = [*engine.command, "run", "-d", "--name", self.name, "--network=host", *options, "-e", TOKEN_VARIABLE]
        subprocess.run(  # nosec B603  # the engine's own CLI, arguments as a list
            [*command, image, *serve, "--reload-interval", str(RELOAD_SECONDS)],
            env=environment_with(api_token=self.token),
            check=True,
            capture_output=True,
            timeout=120,
        )
        cleanup.callback(stopping("the predictor container", self.remove))

    def logs(self, lines: int = 30) -> str:
        """The container's last log lines."""
        done = self.engine.run("logs", "--tail", str(lines), self.name, check=False)
        return (done.stdout + done.stderr).strip()

    def wait_until_ready(self) -> float:
        """Waits for `/v2/models/<model>/ready`; returns the seconds it took."""
        started = time.perf_counter()
        shown = ""
        while time.perf_counter() - started < READY_TIMEOUT:
            last_line = (self.logs(1).splitlines() or [""])[-1]
            if last_line != shown:  # progress: the predictor's latest log line
                step(f"    predictor: {last_line[:160]}")
                shown = last_line
            running = self.engine.run("inspect", "-f", "{{.State.Running}}", self.name, check=False).stdout.strip()
            expect(running == "true", f"the predictor container stopped:\n{self.logs()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/v2/models/{MODEL}/ready", timeout=2).status_code == 200:
                    return round(time.perf_counter() - started, 1)
            time.sleep(2)
        raise SmokeCheckError(f"the predictor was not ready in {READY_TIMEOUT:g} s:\n{self.logs()}")

    def label(self, answer: dict, ticket: dict[str, str]) -> None:
        """An agent's correction of one answer through `/v1/feedback`."""
        requests.post(
            f"{self.url}/v1/feedback",
            timeout=30,
            headers={"Authorization": f"Bearer {self.token}"},
            json={
                "ticket_id": answer["id"],
                "labels": {"category": ticket["category"], "priority": ticket["priority"]},
            },
        ).raise_for_status()

    def remove(self) -> None:
        """Stops and removes the container."""
        self.engine.run("rm", "-f", self.name, check=False, timeout=60)


def wait_for_count(services: Services, table: str, expected: int, timeout: float = 60.0) -> int:
    """Polls a table until it holds `expected` rows (the predictor writes its log in batches, a few seconds late)."""
    deadline = time.monotonic() + timeout
    while (found := services.count(table)) < expected and time.monotonic() < deadline:
        time.sleep(1)
    return found


def serve(predictor: Predictor, services: Services, usual: list, novel: list, evidence: dict) -> list[dict]:
    """Stage 4: the predictor answers, and every answer and label lands in PostgreSQL."""
    evidence["ready_seconds"] = predictor.wait_until_ready()
    answers = send(predictor.url, usual, "smoke-usual")
    shifted = send(predictor.url, novel, "smoke-shifted")
    expect(len(answers) == len(usual) and len(shifted) == len(novel), "not every ticket got an answer")
    for answer in answers + shifted:
        expect(answer["labels"]["category"]["label"] and answer["similar"], f"incomplete answer: {answer}")
    for ticket, answer in zip(novel[:LABELLED], shifted, strict=False):
        predictor.label(answer, ticket)
    served = len(usual) + len(novel)
    logged = wait_for_count(services, "predictions", served)
    labelled = wait_for_count(services, "feedback", LABELLED)
    expect(logged == served, f"PostgreSQL holds {logged} predictions for {served} answers")
    expect(labelled == LABELLED, f"PostgreSQL holds feedback on {labelled} tickets for {LABELLED} labelled")
    evidence.update(
        answered=served,
        rows_in_postgres=logged,
        labelled_tickets_in_postgres=labelled,
        version=answers[0]["model"]["version"],
        new_topic_routed_to=sorted({a["labels"]["category"]["label"] for a in shifted}),
    )
    return shifted


def drift(services: Services, predictor: Predictor, root: Path, novel: list, held_out: list, verbose: bool, evidence):
    """Stage 5: the drift pipeline in containers finds the shift, retrains and moves `champion`.

    Then the predictor, polling the alias, serves the new version.
    """
    from ticketflow.pipelines.drift import drift_pipeline

    before = services.champion().version
    summary, run = run_in_containers(
        drift_pipeline,
        {
            "window_records": len(novel),
            "pushgateway": "",  # no Pushgateway here: the retraining is checked in MLflow instead
            "mlflow_tracking_uri": services.mlflow_url,
            "vector_store_uri": services.chroma_url,
        },
        root,
        services.environment(),
        verbose,
    )
    expect(summary["drift_detected"], f"no drift found: {summary['reason']}")
    expect(summary["window"]["tickets"] == len(novel), f"the window held {summary['window']['tickets']} tickets")
    versions = services.versions()
    champion = services.champion()
    expect(len(versions) >= 2, f"no new version was registered: {versions}")
    expect(champion.version != before and int(champion.version) == versions[-1], f"champion stayed v{before}")
    collection = champion.tags.get("collection", "")
    evidence.update(
        drift_detected=True,
        reason=summary["reason"],
        window_tickets=summary["window"]["tickets"],
        versions=versions,
        champion_before=before,
        champion_after=champion.version,
        collection=collection,
        vectors=services.collection_size(collection),
        run_folder=str(run.run_dir),
    )
    # The predictor polls the alias every RELOAD_SECONDS; the version in its answers says what it serves.
    deadline = time.monotonic() + 120
    while (served := send(predictor.url, held_out[:1], "smoke-reload")[0]["model"]["version"]) != champion.version:
        expect(time.monotonic() < deadline, f"the predictor still serves v{served}:\n{predictor.logs()}")
        time.sleep(2)
    after = send(predictor.url, held_out, "smoke-after")
    accuracy = sum(a["labels"]["category"]["label"] == NEW_TOPIC for a in after) / max(len(after), 1)
    evidence.update(serving_version=served, new_topic_accuracy=round(accuracy, 4))
    expect(accuracy > 0.5, f"the new champion routes only {accuracy:.0%} of unseen {NEW_TOPIC} tickets there")


# --- the whole run ------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (the Makefile passes its variables)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", default="", help="engine command; empty: Docker if it answers, else podman")
    parser.add_argument("--image", default=DEFAULT_IMAGE, help="the image's name as the engine lists it")
    parser.add_argument("--base-image", default="", help="the Dockerfile's BASE_IMAGE; empty: chosen (see README)")
    parser.add_argument("--pip-cert", default="", help="CA bundle for pip inside the build (Podman: mounted)")
    parser.add_argument("--torch-wheel-dir", default="", help="folder holding torch's CPU wheel (else PyTorch's index)")
    parser.add_argument("--skip-build", action="store_true", help="reuse the image when the engine lists it")
    parser.add_argument("--keep-logs", default="", help="folder to copy the services' and the build's logs into")
    parser.add_argument("--verbose", action="store_true", help="stream the steps' logs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Runs the smoke test; the exit status is 0 only when every stage passed."""
    args = parse_args(argv)
    # Compile-time image of every step (ticketflow.components.kfp reads it at import, below in the stages).
    export_to_environment(image=args.image)
    if args.keep_logs:
        Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
    report = SmokeReport()
    work = Path(tempfile.mkdtemp(prefix="ticketflow-smoke-"))
    try:
        with contextlib.ExitStack() as cleanup:
            with report.stage("image") as evidence:
                engine = detect_engine(args.engine)
                build_image(args, engine, work, evidence)
            with report.stage("services") as evidence:
                services = Services(work, cleanup)
                cleanup.callback(step, "stopped the engine's API service")  # runs after the service's exit below
                docker_host = cleanup.enter_context(engine.api(work))
                if docker_host:  # kfp.local's DockerRunner calls docker.from_env(), which reads DOCKER_HOST
                    export_library_variable("DOCKER_HOST", docker_host)
                evidence.update(mlflow=services.mlflow_url, chroma=services.chroma_url, postgres=services.postgres.port)
            root = writable_pipeline_root(work / "pipeline-root")
            with report.stage("training") as evidence:
                from ticketflow.components import kfp as steps

                expect(args.image == steps.BASE_IMAGE, f"the steps were compiled for {steps.BASE_IMAGE}")
                train(services, root, args.verbose, evidence)
                evidence["leftover_containers"] = leftover_containers(engine, args.image)
                expect(not evidence["leftover_containers"], "step containers were left behind")
            fresh = generated_tickets(range(100, 104))
            usual = [t for t in fresh if t["category"] != NEW_TOPIC][:150]
            novel = [t for t in fresh if t["category"] == NEW_TOPIC]
            held_out = novel[LABELLED:]
            with report.stage("serving") as evidence:
                predictor = Predictor(engine, args.image, services.environment(), cleanup)
                serve(predictor, services, usual, novel, evidence)
            with report.stage("drift") as evidence:
                drift(services, predictor, root, novel, held_out, args.verbose, evidence)
            if args.keep_logs:
                for log in work.glob("*.log"):
                    shutil.copy2(log, Path(args.keep_logs) / log.name)
    except Exception:  # the report names the failed stage; the trace goes to stderr
        traceback.print_exc()
    finally:
        started = time.perf_counter()
        shutil.rmtree(work, ignore_errors=True)
        step(f"removed {work} in {time.perf_counter() - started:.1f} s")
    print(report.to_json(), flush=True)
    return 0 if report.ok and len(report.stages) == 5 else 1


def leftover_containers(engine: ContainerEngine, image: str) -> list[str]:
    """Containers of the image that still exist (running or not): each step's should be gone."""
    listed = engine.run("ps", "-a", "--filter", f"ancestor={image}", "--format", "{{.Names}}").stdout.split()
    return [name for name in listed if not name.startswith("ticketflow-smoke-predictor-")]


if __name__ == "__main__":
    sys.exit(main())
