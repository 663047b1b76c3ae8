"""Fixtures of the conformance suite: the registry client, settings and per-test clean-up.

Categories are pytest markers (pull, push, content_discovery, content_management) so a run can
pick them with `-m`; the OCI_TEST_* variables of the official suite select them too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ociregistry.conformance.client import RegistryClient, Tracker
from ociregistry.conformance.settings import CATEGORIES, Settings, enabled_categories


def pytest_configure(config: pytest.Config) -> None:
    for marker, variable in CATEGORIES.items():
        config.addinivalue_line(
            "markers", f"{marker}: OCI conformance category (official switch: {variable})"
        )


def pytest_report_header(config: pytest.Config) -> list[str]:
    url = os.environ.get("OCI_ROOT_URL", "<unset>")
    namespace = os.environ.get("OCI_NAMESPACE", "<unset>")
    strict = os.environ.get("OCI_STRICT", "0")
    return [f"OCI registry: {url}  namespace: {namespace}  strict: {strict}"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip categories the OCI_TEST_* variables switched off, as the official suite does."""
    enabled = enabled_categories(os.environ)
    for item in items:
        for marker, variable in CATEGORIES.items():
            if item.get_closest_marker(marker) and marker not in enabled:
                item.add_marker(pytest.mark.skip(reason=f"category disabled ({variable} unset/0)"))


@pytest.fixture(scope="session")
def settings() -> Settings:
    try:
        return Settings.from_env()
    except ValueError as error:
        pytest.exit(str(error), returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture(scope="session")
def strict(settings: Settings) -> bool:
    return settings.strict


@pytest.fixture(scope="session")
def client(settings: Settings) -> Iterator[RegistryClient]:
    registry = RegistryClient(settings)
    yield registry
    registry.close()


@pytest.fixture(scope="session")
def namespace(settings: Settings) -> str:
    return settings.namespace


@pytest.fixture(scope="session")
def crossmount_namespace(settings: Settings) -> str:
    return settings.crossmount_namespace


@pytest.fixture
def tracker(client: RegistryClient) -> Iterator[Tracker]:
    """What this test pushes is deleted when it ends."""
    pushed = Tracker(client)
    yield pushed
    pushed.clean()


@pytest.fixture(scope="module")
def module_tracker(client: RegistryClient) -> Iterator[Tracker]:
    """For read-only tests of one module that share content pushed once."""
    pushed = Tracker(client)
    yield pushed
    pushed.clean()
