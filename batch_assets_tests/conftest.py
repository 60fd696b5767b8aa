"""Shared fixtures: a temporary data folder with every setting pointed into it, and a real Dagster instance."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from batch_assets import settings

# The fault-injection tests' fixtures (a clean reference run, the first day reconciled once a session).
pytest_plugins = ["batch_assets_tests.faults"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first (a stable sort): under `make test`'s parallel workers the longest ones start at once
    instead of being the last ones left running."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh BATCH_ASSETS_HOME; every setting takes its default inside it."""
    data = tmp_path / "data"
    values = settings.data_environment(data)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    (data / "landing").mkdir(parents=True)
    return data


@pytest.fixture
def landing(home: Path) -> Path:
    return home / "landing"


@pytest.fixture
def instance(home: Path) -> Iterator[dg.DagsterInstance]:
    """A real Dagster instance with SQLite storage in the temporary DAGSTER_HOME."""
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    with dg.instance_for_test(temp_dir=str(dagster_home)) as instance:
        yield instance
