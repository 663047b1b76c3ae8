"""On SQLite a manifest is counted after its PUT (catalog/usage_deferred.py, migrations 0022-23):
every figure read is still exact, whatever happens while manifests wait to be counted.

Each test stops the worker's own count after a PUT (`UsageCounter.pushed`), so that manifests
stay pending until what the test does next: a read of a figure, a deletion, garbage
collection, a quota set, a restart. Each figure is then compared with the brute-force
computation of tests/api/test_usage.py, which reads every stored manifest back.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_usage import Scenario, _brute_force, _check, _shown

from support.inprocess import InProcessRegistry


def _left_pending(registry: InProcessRegistry) -> None:
    """No count after a PUT: the manifests wait for the next read or removal."""
    registry.services.images.usage.pushed = lambda: None  # type: ignore[method-assign]


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[InProcessRegistry]:
    with InProcessRegistry(tmp_path / "data") as running:
        _left_pending(running)
        yield running


def _marks(registry: InProcessRegistry) -> tuple[int, int]:
    """The mark and the highest manifest id, read outside the app."""
    path = Path(registry.settings.data_dir) / "registry.db"
    with sqlite3.connect(path) as connection:
        (mark,) = connection.execute("SELECT manifest_id FROM usage_fold").fetchone()
        (newest,) = connection.execute("SELECT coalesce(max(id), 0) FROM manifests").fetchone()
    return mark, newest


def _pending(registry: InProcessRegistry) -> bool:
    mark, newest = _marks(registry)
    return newest > mark


def test_a_put_leaves_its_manifest_pending_and_a_read_counts_it(
    registry: InProcessRegistry,
) -> None:
    """After a PUT nothing of usage is written; the first read of a figure counts it."""
    scenario = Scenario(registry)
    registry.run(scenario.run(("push", (0, "app"), "1.0", ((0, 1), 0))))
    registry.run(scenario.run(("push", (0, "tools/cli"), "1.0", ((0, 2), 1))))
    assert _pending(registry)
    path = Path(registry.settings.data_dir) / "registry.db"
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT count(*) FROM image_usage").fetchone() == (0,)
    registry.run(_check(scenario))
    assert not _pending(registry)


def test_the_worker_counts_what_its_puts_left_without_a_read(tmp_path: Path) -> None:
    """A worker counts what its PUTs left pending a moment after, with no read to ask."""
    with InProcessRegistry(tmp_path / "data") as registry:
        scenario = Scenario(registry)
        registry.run(scenario.run(("push", (0, "app"), "1.0", ((0, 1), 0))))
        deadline = time.monotonic() + 30
        while _pending(registry) and time.monotonic() < deadline:
            registry.run(registry.services.db.value("SELECT 1"))  # lets the loop run
            time.sleep(0.05)
        assert not _pending(registry)
        registry.run(_check(scenario))


@pytest.mark.parametrize(
    "removal",
    [
        ("delete_manifest", (0, "app"), "1.0"),
        ("delete_tag", (0, "app"), "1.0"),
        ("delete_image", (0, "app")),
        ("delete_registry", 0),
        ("gc",),
    ],
    ids=["manifest", "tag", "image", "registry", "gc"],
)
def test_a_removal_counts_what_is_pending_first(
    registry: InProcessRegistry, removal: tuple[object, ...]
) -> None:
    """Deleting a manifest, a tag, an image or a registry, and garbage collection, while the
    manifests they concern (and others) wait to be counted: no figure goes wrong."""
    scenario = Scenario(registry)
    for step in (
        ("push", (0, "app"), "1.0", ((0, 1), 0)),
        ("push", (0, "app"), "2.0", ((1, 2), 1)),
        ("push", (1, "app"), "1.0", ((0, 3), 2)),
        ("delete_tag", (0, "app"), "2.0"),  # untagged: garbage collection deletes it
    ):
        registry.run(scenario.run(step))
    assert _pending(registry)
    registry.run(scenario.run(removal))
    registry.run(_check(scenario))


def test_a_manifest_pushed_after_the_newest_was_deleted_is_counted(
    registry: InProcessRegistry,
) -> None:
    """SQLite gives a new row the highest id plus one: deleting the newest manifest takes
    the mark down, so the next manifest, which may get the same id, is counted."""
    scenario = Scenario(registry)
    registry.run(scenario.run(("push", (0, "app"), "1.0", ((0, 1), 0))))
    registry.run(scenario.run(("push", (0, "app"), "2.0", ((1, 2), 1))))
    registry.run(_check(scenario))
    counted, newest = _marks(registry)
    assert counted == newest
    registry.run(scenario.run(("delete_manifest", (0, "app"), "2.0")))
    assert _marks(registry) == (newest - 1, newest - 1)
    registry.run(scenario.run(("push", (0, "app"), "3.0", ((2, 3), 2))))
    assert _marks(registry) == (newest - 1, newest)  # the id again, above the mark
    registry.run(_check(scenario))


def test_a_manifest_naming_a_layer_twice_is_counted_in_its_put(
    registry: InProcessRegistry,
) -> None:
    """The count adds every reference it finds (`UNION ALL`): a manifest naming a layer twice
    is counted in its PUT, where each blob counts once, or deleting it would leave the layer
    counted."""
    scenario = Scenario(registry)
    registry.run(scenario.run(("push", (0, "app"), "1.0", ((0, 1), 0))))
    registry.run(scenario.run(("push", (0, "app"), "2.0", ((2, 2), 1))))
    mark, newest = _marks(registry)
    assert mark == newest  # counted in the PUT, with the one pending before it
    registry.run(_check(scenario))
    registry.run(scenario.run(("delete_manifest", (0, "app"), "2.0")))
    registry.run(_check(scenario))


def test_a_registry_with_a_quota_is_counted_in_its_put(registry: InProcessRegistry) -> None:
    """Setting a quota counts what is pending first; from then on the registry's PUTs are
    counted in their transaction, where the quota is enforced."""
    scenario = Scenario(registry)
    registry.run(scenario.run(("push", (0, "app"), "1.0", ((0, 1), 0))))
    assert _pending(registry)
    name = scenario.names[0]
    patched = registry.run(
        registry.client.patch(f"/api/v1/registries/{name}", json={"quota_bytes": 10**9})
    )
    assert patched.status_code == 200, patched.text
    assert not _pending(registry)
    registry.run(scenario.run(("push", (1, "app"), "1.0", ((2,), 1))))  # no quota: pending
    registry.run(scenario.run(("push", (0, "app"), "2.0", ((1, 2), 2))))
    assert not _pending(registry)  # counted in the PUT, with the one pending before it
    registry.run(_check(scenario))


def test_what_a_stopped_process_left_pending_is_counted_by_the_next(tmp_path: Path) -> None:
    """A crash between a PUT and its count loses nothing: the next process counts it."""
    registry = InProcessRegistry(tmp_path / "data")
    _left_pending(registry)
    scenario = Scenario(registry)
    registry.run(scenario.run(("push", (0, "app"), "1.0", ((0, 1), 0))))
    registry.run(scenario.run(("index", (1, "app"), "2.0", [((1, 2), 1), ((3,), 2)], False)))
    registry.close()
    assert _pending(registry)
    again = InProcessRegistry(tmp_path / "data")
    try:
        scenario.r, scenario.client = again, again.client
        again.run(_check(scenario))
        assert not _pending(again)
    finally:
        again.close()


def test_migration_0022_counts_what_is_pending_on_the_way_down(tmp_path: Path) -> None:
    """Going down to 0021 counts every manifest left pending and restores 0018's trigger of
    blob links; going up again marks every manifest counted; every figure is the same."""
    from alembic import command

    from support.migrations import migration_step

    registry = InProcessRegistry(tmp_path / "data")
    _left_pending(registry)
    scenario = Scenario(registry)
    for step in (
        ("push", (0, "app"), "1.0", ((0, 1), 0)),
        ("orphan", (0, "app"), b"uploaded, never referenced"),
    ):
        registry.run(scenario.run(step))
    before = registry.run(_shown(registry, scenario.names))  # counts the push
    registry.run(scenario.run(("push", (1, "app"), "1.0", ((2, 3), 1))))  # no layer shared
    registry.close()
    assert _pending(registry)
    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'registry.db'}"

    def state(sync: Any) -> tuple[int, str]:
        rows = sync.exec_driver_sql("SELECT count(*) FROM registry_usage").scalar()
        trigger = sync.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE name = 'usage_blob_stored'"
        ).scalar()
        return rows, trigger

    rows, trigger = migration_step(url, command.downgrade, "0021", then=state)
    assert "WHEN" not in trigger  # 0018's
    again = InProcessRegistry(tmp_path / "data")  # migrates up again as it starts
    try:
        assert _marks(again)[0] == _marks(again)[1]
        shown = again.run(_shown(again, scenario.names))
        assert shown[0] == before[0] and shown != before  # the second registry counted
        truth = again.run(_brute_force(again))
        assert shown[1][0] == sum(truth["registry_bytes"][scenario.names[1]].values())
        assert rows == len(truth["registry_bytes"][scenario.names[0]]) + len(
            truth["registry_bytes"][scenario.names[1]]
        )
        scenario.r, scenario.client = again, again.client
        again.run(_check(scenario))
    finally:
        again.close()


def test_a_read_is_served_when_the_count_cannot_be_written(registry: InProcessRegistry) -> None:
    """A database that takes no write (a full disk, here a trigger that fails the count's
    last statement) does not fail the reads: they answer with the figures counted so far,
    and the count is made by the first read once writes work again."""
    scenario = Scenario(registry)
    registry.run(scenario.run(("push", (0, "app"), "1.0", ((0, 1), 0))))
    registry.run(_check(scenario))
    registry.run(scenario.run(("push", (1, "app"), "1.0", ((2,), 1))))
    path = Path(registry.settings.data_dir) / "registry.db"
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TRIGGER refused BEFORE UPDATE ON usage_fold "
            "BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END"
        )
    name = scenario.names[1]
    shown = registry.run(registry.client.get(f"/api/v1/registries/{name}"))
    assert shown.status_code == 200, shown.text
    assert shown.json()["size_bytes"] == 0  # not counted yet
    assert _pending(registry)
    with sqlite3.connect(path) as connection:
        connection.execute("DROP TRIGGER refused")
    registry.run(_check(scenario))
    assert not _pending(registry)


def test_migration_0023_counts_what_is_pending_with_the_union(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Manifests left pending by a process before migration 0023 may name a layer twice
    (here one made so by the test): the migration counts them as 0022's count did, each blob
    once, so that deleting them later leaves no figure wrong."""
    from alembic import command

    import ociregistry.catalog.images as images
    from support.migrations import migration_step

    monkeypatch.setattr(images, "counted_later", lambda parsed, entries: True)
    registry = InProcessRegistry(tmp_path / "data")
    _left_pending(registry)
    scenario = Scenario(registry)
    registry.run(scenario.run(("push", (0, "app"), "1.0", ((0, 0, 1), 0))))
    registry.close()
    assert _pending(registry)
    monkeypatch.undo()
    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'registry.db'}"
    migration_step(url, command.downgrade, "0022")
    migration_step(url, command.upgrade, "0023")
    assert not _pending(registry)
    again = InProcessRegistry(tmp_path / "data")
    try:
        scenario.r, scenario.client = again, again.client
        again.run(_check(scenario))
        again.run(scenario.run(("delete_manifest", (0, "app"), "1.0")))
        again.run(_check(scenario))
    finally:
        again.close()
