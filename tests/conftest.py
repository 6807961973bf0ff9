"""Shared fixtures: paths to the bundled sample and to the real data in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ticketflow.components.config import TicketflowConfig

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample_tickets.csv"
SHARED_DATA = ROOT.parent / "shared" / "data"
IT_SERVICE = SHARED_DATA / "it_service_tickets" / "tickets.csv"
CUSTOMER_SUPPORT = SHARED_DATA / "customer_support_tickets" / "tickets.csv"


def shared_file(path: Path) -> Path:
    """Returns a file of ../shared/data; skips when absent, fails under CI (where it is always there)."""
    if not path.is_file():
        message = f"{path} is absent (real ticket data lives in ../shared/data beside the checkout)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"under CI: {message}")
        pytest.skip(message)
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks each test with its tier, from its folder: `unit` (tests/unit) or `integration` (tests/integration)."""
    for item in items:
        tier = item.path.relative_to(ROOT / "tests").parts[0]
        if tier in ("unit", "integration"):
            item.add_marker(tier)
