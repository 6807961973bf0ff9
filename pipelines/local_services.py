"""Throwaway stand-ins for the cluster's services on 127.0.0.1: PostgreSQL, the MLflow tracking server, ChromaDB.

The tests use `PostgresServer`; `make smoke-containers` (`ticketflow.pipelines.smoke_containers`) starts all three
for the pipeline steps and the predictor that it runs in containers, which reach them over the host's network.

PostgreSQL: initdb in a temporary folder, pg_ctl on a free loopback port.

PostgreSQL refuses to run as root, and tests run as root here and in CI: as root, initdb and pg_ctl run as the
`postgres` user (`runuser -u postgres --`) in a folder that user owns; otherwise they run as the current user.
Authentication is `trust` for the superuser `postgres`, on 127.0.0.1 only; the Unix socket lives in the
temporary folder, never in /var/run/postgresql, so the Debian package's own cluster is neither needed nor touched.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg
import requests
from psycopg import sql

SERVICE_USER = "postgres"  # PostgreSQL's superuser and, when we are root, the system user that runs the server
READY_TIMEOUT = 15.0  # seconds for the server to accept a connection after `pg_ctl start`
COMMAND_TIMEOUT = 120.0  # seconds for initdb or pg_ctl; initdb writes ~40 MB, slow on a disk other jobs share
LOG_TAIL_LINES = 30  # how much of the server log an error message quotes
PORT_ATTEMPTS = 3  # free ports tried when the picked one is taken before the first start


SERVICE_READY_TIMEOUT = 120.0  # seconds for an HTTP service to answer its health route (MLflow: ~25 s when busy)
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL for a service's process group


class PostgresServerError(RuntimeError):
    """initdb, pg_ctl or the first connection failed; the message quotes the command's output and the server log."""


class ServiceError(RuntimeError):
    """A service process exited or did not answer its health route in time; the message ends with its log."""


def find_postgres_bin() -> Path | None:
    """Finds the folder holding `initdb` and `pg_ctl`.

    Returns:
        The newest /usr/lib/postgresql/<version>/bin (Debian's layout), else the folder of `pg_ctl` on PATH when
        `initdb` sits beside it, else None (PostgreSQL is not installed).
    """
    debian_bins = [
        path.parent
        for path in Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")
        if (path.parent / "initdb").is_file() and path.parent.parent.name.isdigit()
    ]
    if debian_bins:
        return max(debian_bins, key=lambda bin_dir: int(bin_dir.parent.name))
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl and (Path(pg_ctl).parent / "initdb").is_file():
        return Path(pg_ctl).parent
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    """One PostgreSQL server in a temporary folder, on 127.0.0.1, superuser `postgres` without password.

    `start()` creates the cluster on first use; `stop()` then `start()` again brings the same data back on the same
    port, so a client that keeps its URL can reconnect. `cleanup()` stops the server and deletes the folder.

    Args:
        bin_dir: Folder of `initdb` and `pg_ctl`; `find_postgres_bin()` when None.
        port: TCP port on 127.0.0.1. When None, a free one, swapped for another if something takes it before the
            first start; after that the port stays for the server's life.

    Raises:
        PostgresServerError: No PostgreSQL installation was found.
    """

    def __init__(self, bin_dir: Path | None = None, port: int | None = None) -> None:
        found = bin_dir or find_postgres_bin()
        if found is None:
            raise PostgresServerError("PostgreSQL is not installed: no initdb/pg_ctl under /usr/lib/postgresql/*/bin")
        self.bin_dir = Path(found)
        self.port = port or free_port()
        self._may_change_port = port is None  # a port we picked may be swapped for another until the first start
        self.root: Path | None = None  # the temporary folder: data/, server.log and the Unix socket
        self.running = False

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory (exists after the first `start()`)."""
        return self._root() / "data"

    @property
    def log_path(self) -> Path:
        """The server's log file (pg_ctl -l)."""
        return self._root() / "server.log"

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of `database` on this server (psycopg 3 driver).

        Args:
            database: Database name.

        Returns:
            `postgresql+psycopg://postgres@127.0.0.1:<port>/<database>`.
        """
        return f"postgresql+psycopg://{SERVICE_USER}@127.0.0.1:{self.port}/{database}"

    def conninfo(self, database: str = "postgres") -> str:
        """The libpq connection string of `database`, for psycopg itself."""
        return f"host=127.0.0.1 port={self.port} user={SERVICE_USER} dbname={database} connect_timeout=2"

    def start(self) -> PostgresServer:
        """Starts the server (initialising the cluster the first time) and waits until it accepts connections.

        Returns:
            self, for chaining.

        Raises:
            PostgresServerError: initdb or pg_ctl failed, or the server did not accept a connection within
                READY_TIMEOUT seconds; the message ends with the tail of the server log.
        """
        if self.running:
            return self
        if not (self.data_dir / "PG_VERSION").is_file():
            self._initdb()
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                self._pg_ctl_start()
                break
            except PostgresServerError as error:
                # free_port() only saw the port free; another process may take it before the server binds it.
                port_taken = "could not bind" in str(error)
                if not (port_taken and self._may_change_port) or attempt == PORT_ATTEMPTS:
                    raise
                self.port = free_port()
        self._may_change_port = False  # from now on clients hold URLs with this port
        self.running = True
        self._wait_until_ready()
        return self

    def _pg_ctl_start(self) -> None:
        server_options = (
            f"-p {self.port} -h 127.0.0.1 -k {self._root()}"
            # Test data is disposable: skipping fsync keeps start, writes and checkpoints fast on a shared disk.
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl",
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-o",
            server_options,
            # pg_ctl's own wait notices a server that exits at once (say, a taken port) without waiting it out.
            "-w",
            "-t",
            str(int(READY_TIMEOUT)),
        )

    def stop(self) -> None:
        """Stops the server with a fast shutdown (clients are disconnected, data is checkpointed); keeps the data."""
        if not self.running:
            return
        self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", str(int(READY_TIMEOUT)))
        self.running = False

    def create_database(self, name: str) -> str:
        """Creates an empty database.

        Args:
            name: Database name (quoted as an identifier, so any text is safe).

        Returns:
            The database's SQLAlchemy URL.
        """
        with psycopg.connect(self.conninfo(), autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drops a database, disconnecting its remaining clients (e.g. an engine's pool) first."""
        with psycopg.connect(self.conninfo(), autocommit=True) as connection:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def cleanup(self) -> None:
        """Stops the server if it runs and deletes its temporary folder; the object can start afresh afterwards."""
        try:
            self.stop()
        finally:
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()

    def _root(self) -> Path:
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="ticketflow-pg-"))
            if os.geteuid() == 0:
                # initdb and the server run as `postgres`, which must own the data directory's parent too.
                try:
                    service_user = pwd.getpwnam(SERVICE_USER)
                except KeyError as error:
                    raise PostgresServerError(f"running as root, but there is no `{SERVICE_USER}` user") from error
                os.chown(self.root, service_user.pw_uid, service_user.pw_gid)
        return self.root

    def _initdb(self) -> None:
        # --no-sync: a test cluster need not survive a power cut; -E UTF8 --locale=C: same cluster on any machine.
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-A",
            "trust",
            "-U",
            SERVICE_USER,
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )

    def _run(self, program: str, *arguments: str) -> None:
        command = [str(self.bin_dir / program), *arguments]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVICE_USER, "--", *command]
        # cwd: the `postgres` user may not be allowed into the caller's working directory.
        try:
            completed = subprocess.run(  # nosec B603  # initdb or pg_ctl of the found installation
                command, cwd=self._root(), capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as error:
            raise PostgresServerError(
                f"`{' '.join(command)}` did not finish within {COMMAND_TIMEOUT} s\n{self._log_tail()}"
            ) from error
        if completed.returncode != 0:
            output = (completed.stdout + completed.stderr).strip()
            raise PostgresServerError(
                f"`{' '.join(command)}` exited with {completed.returncode}:\n{output}\n{self._log_tail()}"
            )

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                with psycopg.connect(self.conninfo()) as connection:
                    connection.execute("SELECT 1")
                return
            except psycopg.OperationalError as error:
                if time.monotonic() > deadline:
                    raise PostgresServerError(
                        f"PostgreSQL on 127.0.0.1:{self.port} did not accept a connection within {READY_TIMEOUT} s: "
                        f"{error}\n{self._log_tail()}"
                    ) from error
                time.sleep(0.1)

    def _log_tail(self) -> str:
        return "(no server log)" if self.root is None else _log_tail(self.log_path)


def database_name(text: str, suffix: str) -> str:
    """A PostgreSQL database name made from free text: lower case, `[a-z0-9_]` only, at most 63 bytes.

    Args:
        text: Any text, e.g. a test's name (`test_read[postgresql]`).
        suffix: Appended after `_` to make the name unique (kept whole).

    Returns:
        A name such as `test_read_postgresql_3f2a`.
    """
    stem = re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_") or "db"
    if not stem[0].isalpha():
        stem = f"db_{stem}"
    return f"{stem[: 62 - len(suffix)].rstrip('_')}_{suffix}"


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.is_file():
        return f"(no log at {path})"
    tail = path.read_text(errors="replace").splitlines()[-lines:]
    return f"last lines of {path}:\n" + "\n".join(tail)


class ServiceProcess:
    """An HTTP server process in a session of its own, ready once its health route answers 200.

    `stop()` signals the whole process group: `mlflow server` runs gunicorn or uvicorn workers and job consumers
    that outlive a SIGTERM to the parent alone, so the group gets SIGTERM, then SIGKILL after `STOP_GRACE`.

    Args:
        name: What the messages call it, e.g. "MLflow".
        command: The program and its arguments.
        health_url: A URL that answers 200 once the service is ready.
        log_path: Where its stdout and stderr go.
        env: Its environment; None inherits this process's.
    """

    def __init__(
        self, name: str, command: Sequence[str], health_url: str, log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.command = list(command)
        self.health_url = health_url
        self.log_path = log_path
        self.env = env
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = SERVICE_READY_TIMEOUT) -> ServiceProcess:
        """Starts the process and waits until its health route answers 200.

        Args:
            timeout: Seconds to wait for the health route.

        Returns:
            self, for chaining.

        Raises:
            ServiceError: The process exited, or did not answer in time (it is stopped then).
        """
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # nosec B603  # our own service commands, no shell
                self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceError(
                    f"{self.name} exited with {self.process.returncode} before it was ready\n{_log_tail(self.log_path)}"
                )
            try:
                if requests.get(self.health_url, timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass  # not listening yet
            time.sleep(0.5)
        self.stop()
        raise ServiceError(
            f"{self.name} did not answer {self.health_url} within {timeout:g} s\n{_log_tail(self.log_path)}"
        )

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Stops the whole process group: SIGTERM, then SIGKILL for whatever is left after `grace` seconds."""
        if self.process is None:
            return
        group = self.process.pid  # start_new_session: the leader's pid is the group's id
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                break  # the group is gone
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and group_alive(group):
                self.process.poll()  # reap the leader, or it stays a zombie member of the group
                time.sleep(0.1)
            if not group_alive(group):
                break
        self.process.poll()
        self.process = None

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def group_alive(group: int) -> bool:
    """Whether any process is left in a process group (zombies of our own children aside: the caller reaps)."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _program(name: str) -> str:
    """A console script of this environment (beside its Python), else the one on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else (shutil.which(name) or name)


def mlflow_server(backend_store_uri: str, artifacts_dir: Path, port: int, log_path: Path) -> ServiceProcess:
    """An MLflow tracking server that also serves the artifacts (`mlflow-artifacts:/` URIs), as on the cluster.

    Args:
        backend_store_uri: Its backend store, e.g. `postgresql+psycopg://postgres@127.0.0.1:5432/mlflow`.
        artifacts_dir: Where the served artifacts are written.
        port: TCP port on 127.0.0.1.
        log_path: Its log file.

    Returns:
        The service, not started yet.
    """
    command = [
        _program("mlflow"),
        "server",
        "--backend-store-uri",
        backend_store_uri,
        "--serve-artifacts",
        "--artifacts-destination",
        str(artifacts_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    return ServiceProcess("MLflow", command, f"http://127.0.0.1:{port}/health", log_path)


def chroma_server(data_dir: Path, port: int, log_path: Path) -> ServiceProcess:
    """A ChromaDB server keeping its data in `data_dir`.

    Args:
        data_dir: Its persistent folder.
        port: TCP port on 127.0.0.1.
        log_path: Its log file.

    Returns:
        The service, not started yet.
    """
    command = [_program("chroma"), "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(data_dir)]
    return ServiceProcess("ChromaDB", command, f"http://127.0.0.1:{port}/api/v2/heartbeat", log_path)
