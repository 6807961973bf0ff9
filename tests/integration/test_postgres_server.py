"""The real PostgreSQL server the tests start (tests/postgres_server.py) and the fixtures built on it (conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from ticketflow.pipelines.local_services import PostgresServer, database_name

seen_urls: set[str] = set()  # postgres_url of each test_each_test_gets_its_own_empty_database case


@pytest.fixture(scope="module")
def restartable_server(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    """A second server of the same installation, which these tests may stop without disturbing the session's."""
    with PostgresServer(postgres_server.bin_dir) as server:
        yield server


def test_server_answers_through_sqlalchemy_and_psycopg(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            version = connection.execute(sa.text("SELECT version()")).scalar_one()
    finally:
        engine.dispose()

    assert engine.dialect.name == "postgresql"
    assert engine.dialect.driver == "psycopg"
    assert version.startswith("PostgreSQL ")
    assert postgres_url.startswith("postgresql+psycopg://postgres@127.0.0.1:")


def test_data_survives_stop_and_start_on_the_same_port(restartable_server: PostgresServer) -> None:
    url = restartable_server.create_database("survives_restart")
    # pre-ping: the pool's connections die with the server; a long-lived client reconnects with the same URL.
    engine = sa.create_engine(url, pool_pre_ping=True)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE answers (id integer PRIMARY KEY, label text)"))
            connection.execute(sa.text("INSERT INTO answers VALUES (1, 'network'), (2, 'hardware')"))
        port = restartable_server.port

        restartable_server.stop()
        restartable_server.start()

        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT id, label FROM answers ORDER BY id")).all()
    finally:
        engine.dispose()

    assert restartable_server.port == port
    assert restartable_server.url("survives_restart") == url
    assert [tuple(row) for row in rows] == [(1, "network"), (2, "hardware")]


def test_connecting_to_a_stopped_server_raises_operational_error(restartable_server: PostgresServer) -> None:
    engine = sa.create_engine(restartable_server.url(), connect_args={"connect_timeout": 2})
    restartable_server.stop()
    try:
        with pytest.raises(OperationalError), engine.connect():
            pass
    finally:
        restartable_server.start()

    try:
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()


@pytest.mark.parametrize("case", ["first", "second"])
def test_each_test_gets_its_own_empty_database(postgres_url: str, case: str) -> None:
    engine = sa.create_engine(postgres_url)
    try:
        tables_before = sa.inspect(engine).get_table_names()
        with engine.begin() as connection:
            # Same table in both cases: the second would fail if it were handed the first one's database.
            connection.execute(sa.text("CREATE TABLE marker (id integer)"))
    finally:
        engine.dispose()

    assert tables_before == []
    assert postgres_url not in seen_urls
    seen_urls.add(postgres_url)
    assert f"/test_each_test_gets_its_own_empty_database_{case}_" in postgres_url


def test_drop_database_disconnects_its_clients(postgres_server: PostgresServer) -> None:
    name = database_name("dropped while connected", "1")
    engine = sa.create_engine(postgres_server.create_database(name))
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
            connection.commit()  # idle, as a pooled connection between requests
            postgres_server.drop_database(name)  # the fixture's teardown, with a client still connected
        catalog = sa.create_engine(postgres_server.url())
        with catalog.connect() as connection:
            remaining = connection.execute(
                sa.text("SELECT count(*) FROM pg_database WHERE datname = :name"), {"name": name}
            ).scalar_one()
        catalog.dispose()
    finally:
        engine.dispose()

    assert remaining == 0


def test_database_url_runs_a_test_on_both_databases(database_url: str, request: pytest.FixtureRequest) -> None:
    backend = request.node.callspec.params["database_url"]
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            answer = connection.execute(sa.text("SELECT 1")).scalar_one()
    finally:
        engine.dispose()

    assert request.node.name.endswith(f"[{backend}]")
    assert engine.dialect.name == backend
    assert answer == 1
    if backend == "sqlite":
        assert database_url.startswith("sqlite:///") and database_url.endswith("/log.db")
