"""A throwaway PostgreSQL server for the tests: initdb in a temporary folder, pg_ctl on a free loopback port.

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
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

SERVICE_USER = "postgres"  # PostgreSQL's superuser and, when we are root, the system user that runs the server
READY_TIMEOUT = 15.0  # seconds for the server to accept a connection after `pg_ctl start`
COMMAND_TIMEOUT = 120.0  # seconds for initdb or pg_ctl; initdb writes ~40 MB, slow on a disk other jobs share
LOG_TAIL_LINES = 30  # how much of the server log an error message quotes
PORT_ATTEMPTS = 3  # free ports tried when the picked one is taken before the first start


class PostgresServerError(RuntimeError):
    """initdb, pg_ctl or the first connection failed; the message quotes the command's output and the server log."""


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
            completed = subprocess.run(
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
        if self.root is None or not self.log_path.is_file():
            return "(no server log)"
        lines = self.log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        return f"last lines of {self.log_path}:\n" + "\n".join(lines)


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
