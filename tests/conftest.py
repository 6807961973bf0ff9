"""Shared fixtures: paths to the bundled sample and to the real data in ../shared/data, a real PostgreSQL server."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from ticketflow.components.config import TicketflowConfig
from ticketflow.pipelines.local_services import PostgresServer, PostgresServerError, database_name, find_postgres_bin

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample_tickets.csv"
SHARED_DATA = ROOT.parent / "shared" / "data"
IT_SERVICE = SHARED_DATA / "it_service_tickets" / "tickets.csv"
CUSTOMER_SUPPORT = SHARED_DATA / "customer_support_tickets" / "tickets.csv"


def missing(message: str) -> NoReturn:
    """Skips the test for something this machine lacks; fails it under CI (`CI=true`), which always has it."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"under CI: {message}")
    pytest.skip(message)


def shared_file(path: Path) -> Path:
    """Returns a file of ../shared/data; skips when absent, fails under CI (where it is always there)."""
    if not path.is_file():
        missing(f"{path} is absent (real ticket data lives in ../shared/data beside the checkout)")
    return path


def _drop_leaked_settings() -> None:
    for name in [n for n in os.environ if n.startswith("TICKETFLOW_")] + ["MLFLOW_TRACKING_URI"]:
        os.environ.pop(name, None)


@pytest.fixture(autouse=True)
def isolated_environment():
    """Each test starts and ends without ticketflow's or MLflow's location variables in `os.environ`.

    `mlflow.set_tracking_uri` and the CLI's hand-off to kfp.local tasks write them into the process environment;
    left behind, one test's store would become the next test's (subprocesses inherit them).
    """
    _drop_leaked_settings()
    yield
    _drop_leaked_settings()


@pytest.fixture(scope="session")
def it_service_csv() -> Path:
    """The real IT service tickets (Document → Topic_group)."""
    return shared_file(IT_SERVICE)


@pytest.fixture(scope="session")
def customer_support_csv() -> Path:
    """The real customer support tickets (subject/body/tags → queue, priority)."""
    return shared_file(CUSTOMER_SUPPORT)


@pytest.fixture
def sample_csv() -> Path:
    """The bundled sample tickets."""
    return SAMPLE


@pytest.fixture
def cfg(tmp_path: Path) -> TicketflowConfig:
    """A configuration whose state (MLflow, ChromaDB) lives under tmp_path."""
    return TicketflowConfig(home=str(tmp_path / "home"))


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow sqlite store whose schema MLflow has already created: copy it (`seed_mlflow_store`).

    A fresh store runs MLflow's schema migrations, seconds on an idle machine and far more on a busy one; the
    tests that each need a new, empty store copy this one instead of migrating again. It holds what a new store
    holds (the Default experiment); ticketflow's experiment is created on first use, with the home's artifact root.
    """
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("empty-mlflow") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()  # creates the tables
    return path


def seed_mlflow_store(home: Path, empty_db: Path) -> None:
    """Gives `home` its own empty MLflow store (`<home>/mlflow.db`, the default tracking URI), a copy of `empty_db`."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(empty_db, home / "mlflow.db")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole session (see tests/postgres_server.py), stopped at the end.

    Skipped when PostgreSQL is not installed, a failure under CI (which installs it); a server that is installed but
    does not start is always a failure.
    """
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        missing("PostgreSQL is not installed (Debian package `postgresql`: initdb and pg_ctl in /usr/lib/postgresql)")
    server = PostgresServer(bin_dir)
    try:
        server.start()
    except PostgresServerError as error:
        server.cleanup()
        pytest.fail(f"PostgreSQL is installed in {bin_dir} but did not start: {error}")
    yield server
    server.cleanup()


_database_numbers = itertools.count(1)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database on the session's server, named after the test; its SQLAlchemy URL (psycopg driver).

    Dropped after the test (its open connections are closed by force), so the session's disk use stays small.
    """
    name = database_name(request.node.name, str(next(_database_numbers)))
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on both supported databases: `[sqlite]` (a file under tmp_path) and `[postgresql]` (fresh).

    The PostgreSQL server starts only when a `[postgresql]` test runs, so `-k sqlite` needs no PostgreSQL.
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log.db'}"
    return request.getfixturevalue("postgres_url")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks each test with its tier, from its folder: `unit` (tests/unit) or `integration` (tests/integration)."""
    for item in items:
        tier = item.path.relative_to(ROOT / "tests").parts[0]
        if tier in ("unit", "integration"):
            item.add_marker(tier)
