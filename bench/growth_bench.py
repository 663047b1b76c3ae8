#!/usr/bin/env python3
"""How our lists cost as a registry grows: the same requests at 1k, 10k and 100k items.

Issue 15 asks every list (/v2 catalog and tags, the /api/v1 registries, shared, platform, image
and tag lists, and their searches) to cost at most 2x at 100,000 items what it costs at 1,000.
This benchmark seeds a registry to each size, measures each request with `wrk`, and prints
requests/s, the server's CPU per request and the ratio of the largest size to the smallest.

Seeding goes straight into the database through our models' tables, with the rows a push
makes (an image, its manifest with two references, two image blobs and a tag), because pushing
100,000 images through HTTP would take the better part of an hour; the server is stopped while
rows go in and started again to measure. At size N there are:

- N images spread over 10 registries: `g000`-`g004` user registries of the bench user (`g000`
  and `g001` public, so the shared view has them), `p000`-`p004` platform registries; each image
  has one tag `v1`;
- one image `g000/ci` with N tags (`t000000`, ...), each on its own manifest: a CI that tags
  every commit.

Besides each list's first pages, sorts and searches, it measures what the console asks for
around them (a registry's page, an image's head above its tags, 100 images a page) and the
deep page: the page in the middle of the `ci` tags and of the platform images, 100 a page,
reached by following each answer's `next` cursor (by page number on a server without cursors).
`--only REGEXP` measures only the requests whose label matches it.

The lists of accounts grow too, read by the platform admin: N users (`u000000`, ...), each in
a group of its own (`grp000000`, ...), all of them members of one group `crowd`; N personal
access tokens of `admin` (some never used, some never expiring); N audit events (spread over
50 actors, 5 actions, the 10 registries and two outcomes). The admin's lists of users, groups,
`crowd`'s members, its tokens and the audit log are measured first pages, sorts, searches,
filters, and the middle page by cursor.

Run `python bench/growth_bench.py` (a few minutes at --sizes 1000,10000,100000 with 2 s per
request; needs `wrk`). `--database postgresql` runs the same on a throw-away PostgreSQL cluster
(tests/support/pgcluster.py; Debian's `postgresql`, as root). Progress goes to stderr, the
table to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from ociregistry.auth.models import GroupMember, PersonalAccessToken, ProjectGroup, User
from ociregistry.db.models import (
    AuditEvent,
    Image,
    ImageBlob,
    Manifest,
    ManifestReference,
    Registry,
    Tag,
)

USER = "growthuser"
USER_REGISTRIES = [f"g{i:03d}" for i in range(5)]
PUBLIC_REGISTRIES = USER_REGISTRIES[:2]
PLATFORM_REGISTRIES = [f"p{i:03d}" for i in range(5)]
CI_REGISTRY, CI_IMAGE = "g000", "ci"
SEARCH_REGISTRY = "g001"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
READY_TIMEOUT_SECONDS = 60.0
BATCH = 5_000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
TESTS_DIR = Path(__file__).resolve().parent.parent / "tests"


def log(message: str) -> None:
    print(f"[growth] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def digest(label: str) -> str:
    return "sha256:" + hashlib.sha256(label.encode()).hexdigest()


# -- the server ------------------------------------------------------------------------------


class Server:
    """`ociregistry serve` with one worker, on a free port, in its own process group."""

    def __init__(
        self, data_dir: Path, workers: int, env: dict[str, str], postmaster: int | None = None
    ) -> None:
        self.data_dir = data_dir
        self.postmaster = postmaster  # PostgreSQL's: its backends' CPU counts as ours
        self.workers = workers
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, stdin: str | None = None) -> str:
        argv = [sys.executable, "-m", "ociregistry", *args, "--data-dir", str(self.data_dir)]
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=self.env)
        if done.returncode != 0:
            raise RuntimeError(f"ociregistry {' '.join(args)}: {done.stderr}")
        return done.stdout

    def start(self) -> None:
        log_file = (self.data_dir.parent / "server.log").open("ab")
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "ociregistry", "serve", "--no-access-log"),
                *("--port", str(self.port), "--workers", str(self.workers)),
                *("--data-dir", str(self.data_dir)),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        log_file.close()
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the server exited early; see server.log (--keep)")
            with_retry = httpx.get(f"{self.url}/v2/", timeout=1.0) if self._listening() else None
            if with_retry is not None and with_retry.status_code < 500:
                return
            time.sleep(0.1)
        raise RuntimeError("the server did not become ready")

    def _listening(self) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def cpu_seconds(self) -> float:
        """User and system CPU of every process in the server's process group, and of
        PostgreSQL's postmaster and backends when the database is PostgreSQL (a list's cost is
        mostly its query's, which runs there)."""
        assert self.process is not None
        total = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            ours = int(fields[2]) == self.process.pid  # pgrp
            database = self.postmaster is not None and self.postmaster in (
                int(entry),
                int(fields[1]),  # ppid
            )
            if ours or database:
                total += int(fields[11]) + int(fields[12])
            if int(entry) == self.postmaster:  # and its backends that have exited since
                total += int(fields[13]) + int(fields[14])
        return total / CLOCK_TICKS


# -- seeding ---------------------------------------------------------------------------------


@dataclass
class Seeded:
    images: int = 0
    ci_tags: int = 0
    accounts: int = 0  # users, their groups, `crowd`'s members, admin's tokens, audit events


def seed(database_url: str, seeded: Seeded, size: int) -> None:
    """Add images and `ci` tags until there are `size` of each, as pushes would leave them,
    then ANALYZE (VACUUM ANALYZE on PostgreSQL), as a database that grew would have been."""

    async def run() -> None:
        engine = create_async_engine(database_url)
        async with engine.begin() as conn:
            await conn.run_sync(lambda sync: _seed(sync, seeded, size))
        async with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                # The recounts below leave a dead version of every row they update, with its
                # index entries (a trigram index's too: 224 entries read for 112 groups, a
                # name search 6x dearer), which a database grown by use would have had
                # vacuumed away long ago. VACUUM runs outside a transaction.
                vacuum = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await vacuum.execute(text("VACUUM ANALYZE"))
                # The recounts rewrite every row of these tables at once, and a GIN (trigram)
                # index keeps the scars after VACUUM: a name search of 100,000 groups read it
                # in 5.3 ms, against 1.1 ms after the same counts were raised one row per
                # transaction (85% HOT updates, as use makes them) and 0.7 ms rebuilt.
                for table in _RECOUNTED:
                    await vacuum.execute(text(f"REINDEX TABLE {table}"))
            else:
                await conn.execute(text("ANALYZE"))
                await conn.commit()
        await engine.dispose()

    asyncio.run(run())
    seeded.images = seeded.ci_tags = seeded.accounts = size


# On PostgreSQL the rows go in with triggers off (a superuser's `session_replication_role`),
# and the counts the triggers keep are then set once, as migration 0009 computes them: a
# trigger updating the `ci` image's row for each of 100,000 tags in one transaction leaves a
# chain of dead row versions that each next update walks (100k did not finish in 15 minutes).
_RECOUNT = (
    "UPDATE images SET tag_count = (SELECT count(*) FROM tags WHERE tags.image_id = images.id)",
    "UPDATE images SET size_bytes = (SELECT coalesce(sum(size), 0) FROM image_blobs"
    " WHERE image_blobs.image_id = images.id)",
    "UPDATE registries SET image_count = (SELECT count(*) FROM images"
    " WHERE images.registry_id = registries.id AND images.tag_count > 0)",
    "UPDATE project_groups SET member_count = (SELECT count(*) FROM group_members"
    " WHERE group_members.group_id = project_groups.id)",
)

_RECOUNTED = ("images", "registries", "project_groups")


def _seed(conn: Connection, seeded: Seeded, size: int) -> None:
    postgresql = conn.dialect.name == "postgresql"
    if postgresql:
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
    _seed_rows(conn, seeded, size)
    if postgresql:
        conn.exec_driver_sql("SET LOCAL session_replication_role = origin")
        for statement in _RECOUNT:
            conn.exec_driver_sql(statement)


def _seed_rows(conn: Connection, seeded: Seeded, size: int) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    registry_ids = dict(conn.execute(select(Registry.name, Registry.id)).all())
    holders = [registry_ids[name] for name in USER_REGISTRIES + PLATFORM_REGISTRIES]
    ci_image = conn.scalar(
        select(Image.id).where(
            Image.registry_id == registry_ids[CI_REGISTRY], Image.name == CI_IMAGE
        )
    )
    if ci_image is None:
        ci_image = conn.execute(
            insert(Image).values(
                registry_id=registry_ids[CI_REGISTRY], name=CI_IMAGE, created_at=base
            )
        ).inserted_primary_key[0]
    for start in range(seeded.images, size, BATCH):
        numbers = range(start, min(size, start + BATCH))
        moment = [base + timedelta(seconds=n) for n in numbers]
        conn.execute(
            insert(Image),
            [
                {
                    "registry_id": holders[n % len(holders)],
                    "name": f"img{n:06d}",
                    "created_at": moment[i],
                    "updated_at": moment[i],
                    "pull_count": n * 7919 % 1000,
                }
                for i, n in enumerate(numbers)
            ],
        )
        ids = dict(
            conn.execute(
                select(Image.name, Image.id).where(Image.name.in_([f"img{n:06d}" for n in numbers]))
            ).all()
        )
        image_ids = [ids[f"img{n:06d}"] for n in numbers]
        _seed_pushes(conn, image_ids, [f"img{n}" for n in numbers], ["v1"] * len(numbers))
    for start in range(seeded.ci_tags, size, BATCH):
        numbers = range(start, min(size, start + BATCH))
        _seed_pushes(
            conn,
            [ci_image] * len(numbers),
            [f"ci{n}" for n in numbers],
            [f"t{n:06d}" for n in numbers],
        )
    _seed_accounts(conn, seeded, size)


ACTIONS = ("registry.update", "image.delete", "tag.delete", "auth.login", "token.create")
CROWD = "crowd"


def _seed_accounts(conn: Connection, seeded: Seeded, size: int) -> None:
    """Users, their own groups and `crowd`'s members, admin's tokens and audit events, as
    the API leaves them, up to `size` of each."""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    admin = conn.scalar(select(User.id).where(User.username == "admin"))
    crowd = conn.scalar(select(ProjectGroup.id).where(ProjectGroup.name == CROWD))
    if crowd is None:
        crowd = conn.execute(
            insert(ProjectGroup).values(
                resource_id="grp-crowd", name=CROWD, description="", created_at=base
            )
        ).inserted_primary_key[0]
    registries = USER_REGISTRIES + PLATFORM_REGISTRIES
    for start in range(seeded.accounts, size, BATCH):
        numbers = range(start, min(size, start + BATCH))
        moment = [base + timedelta(seconds=n) for n in numbers]
        conn.execute(
            insert(User),
            [
                {"username": f"u{n:06d}", "password_hash": "!", "created_at": moment[i]}
                | {"updated_at": moment[i], "is_admin": False, "disabled": False}
                for i, n in enumerate(numbers)
            ],
        )
        # The batch by a range of names (an index range): an `IN` of 5,000 names
        # was a sequential scan on PostgreSQL, whose statistics were of the empty table.
        users = dict(
            conn.execute(
                select(User.username, User.id).where(
                    User.username.between(f"u{start:06d}", f"u{numbers[-1]:06d}")
                )
            ).all()
        )
        conn.execute(
            insert(ProjectGroup),
            [
                {"resource_id": f"grp-{n:06d}", "name": f"grp{n:06d}", "description": ""}
                | {"created_at": moment[i]}
                for i, n in enumerate(numbers)
            ],
        )
        groups = dict(
            conn.execute(
                select(ProjectGroup.name, ProjectGroup.id).where(
                    ProjectGroup.name.between(f"grp{start:06d}", f"grp{numbers[-1]:06d}")
                )
            ).all()
        )
        members = []
        for n in numbers:
            user = users[f"u{n:06d}"]
            members += [
                {"group_id": groups[f"grp{n:06d}"], "user_id": user, "role": "owner"},
                {"group_id": crowd, "user_id": user, "role": "guest"},
            ]
            members[-2:] = [m | {"username": f"u{n:06d}"} for m in members[-2:]]
        conn.execute(insert(GroupMember), [m | {"created_at": base} for m in members])
        conn.execute(
            insert(PersonalAccessToken),
            [
                {"public_id": f"pat{n:06d}", "user_id": admin, "name": f"tok{n:06d}"}
                | {"secret_hash": "!", "read_only": n % 2 == 0, "created_at": moment[i]}
                | {"last_used_at": None if n % 3 == 0 else moment[i] + timedelta(days=n % 7)}
                | {"expires_at": None if n % 4 == 0 else moment[i] + timedelta(days=90)}
                for i, n in enumerate(numbers)
            ],
        )
        conn.execute(
            insert(AuditEvent),
            [
                {"at": moment[i], "actor": f"u{n % 50:06d}", "client": "127.0.0.1"}
                | {"request_id": None, "action": ACTIONS[n % len(ACTIONS)], "method": "POST"}
                | {"target": f"/api/v1/registries/{registries[n % 10]}/images/img{n:06d}"}
                | {"registry": registries[n % 10], "status": 200 if n % 10 else 403}
                | {"outcome": "success" if n % 10 else "denied", "detail": None}
                for i, n in enumerate(numbers)
            ],
        )


def _seed_pushes(
    conn: Connection, image_ids: list[int], labels: list[str], tags: list[str]
) -> None:
    """For each (image, label, tag): the rows `PUT /v2/<image>/manifests/<tag>` makes."""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    now = [base + timedelta(seconds=i) for i in range(len(labels))]
    manifests = [digest(f"manifest {label}") for label in labels]
    conn.execute(  # type: ignore[attr-defined]
        insert(Manifest),
        [
            {
                "image_id": image_id,
                "digest": manifests[i],
                "media_type": OCI_MANIFEST,
                "size": 400,
                "created_at": now[i],
            }
            for i, image_id in enumerate(image_ids)
        ],
    )
    found = dict(
        conn.execute(  # type: ignore[attr-defined]
            select(Manifest.digest, Manifest.id).where(Manifest.digest.in_(manifests))
        ).all()
    )
    blobs, references, tag_rows = [], [], []
    for i, image_id in enumerate(image_ids):
        manifest_id = found[manifests[i]]
        config, layer = digest(f"config {labels[i]}"), digest(f"layer {labels[i]}")
        blobs += [
            {"image_id": image_id, "digest": config, "size": 300, "created_at": now[i]},
            {"image_id": image_id, "digest": layer, "size": 2_000_000, "created_at": now[i]},
            {"image_id": image_id, "digest": manifests[i], "size": 400, "created_at": now[i]},
        ]
        references += [
            {"manifest_id": manifest_id, "position": 0, "digest": config, "kind": "blob",
             "size": 300},
            {"manifest_id": manifest_id, "position": 1, "digest": layer, "kind": "blob",
             "size": 2_000_000},
        ]  # fmt: skip
        tag_rows.append(
            {"image_id": image_id, "name": tags[i], "manifest_id": manifest_id}
            | {"created_at": now[i], "pull_count": manifest_id * 7919 % 1000}
        )
    conn.execute(insert(ImageBlob), blobs)  # type: ignore[attr-defined]
    conn.execute(insert(ManifestReference), references)  # type: ignore[attr-defined]
    conn.execute(insert(Tag), tag_rows)  # type: ignore[attr-defined]


# -- measuring -------------------------------------------------------------------------------


def cases() -> list[tuple[str, str]]:
    """Every list of /v2 and /api/v1, as the console asks for them: its default sorts, its
    other sorts, its searches and the total each page shows (see console/static/views)."""
    tags = f"/api/v1/registries/{CI_REGISTRY}/images/{CI_IMAGE}/-/tags"
    images = f"/api/v1/registries/{SEARCH_REGISTRY}/images"
    ci = f"{CI_REGISTRY}/{CI_IMAGE}"
    return [
        ("/v2/_catalog?n=100", "/v2/_catalog?n=100"),
        ("/v2/_catalog?n=100&last=…", f"/v2/_catalog?n=100&last={SEARCH_REGISTRY}/img000500"),
        ("/v2/<ci>/tags/list?n=100", f"/v2/{ci}/tags/list?n=100"),
        ("/v2/<ci>/tags/list?n=100&last=…", f"/v2/{ci}/tags/list?n=100&last=t000500"),
        ("api registries", "/api/v1/registries"),
        ("api registries, search", "/api/v1/registries?q=g00"),
        ("api shared registries", "/api/v1/shared/registries"),
        ("api platform registries", "/api/v1/platform/registries"),
        ("api platform images", "/api/v1/platform/images"),
        ("api platform images, -created_at", "/api/v1/platform/images?sort=-created_at"),
        ("api platform images, search", "/api/v1/platform/images?q=img0001"),
        ("api platform images, search of registry names", "/api/v1/platform/images?q=p00"),
        ("api registry (console: a registry's page)", f"/api/v1/registries/{SEARCH_REGISTRY}"),
        ("api images, page 1", f"{images}?page=1"),
        ("api images, 100 a page (console)", f"{images}?page_size=100"),
        ("api images, page 5", f"{images}?page=5"),
        ("api images, -created_at", f"{images}?sort=-created_at"),
        ("api images, -updated_at", f"{images}?sort=-updated_at"),
        ("api images, -pull_count", f"{images}?sort=-pull_count"),
        ("api images, search", f"{images}?q=img0001"),
        (
            "api image (console: a tag list's head)",
            f"/api/v1/registries/{CI_REGISTRY}/images/{CI_IMAGE}",
        ),
        ("api tags, page 1", f"{tags}?page=1"),
        ("api tags, page 5", f"{tags}?page=5"),
        ("api tags, name", f"{tags}?sort=name"),
        ("api tags, -pull_count", f"{tags}?sort=-pull_count"),
        ("api tags, search", f"{tags}?q=t00012"),
    ]


def account_cases() -> list[tuple[str, str]]:
    """The lists of accounts and the audit log, as the platform admin reads them in the
    console (its users, groups, a group's members, its tokens and audit screens)."""
    members = f"/api/v1/project-groups/{CROWD}/members"
    tokens = "/api/v1/users/admin/tokens"
    audit = "/api/v1/audit-log"
    return [
        ("api users", "/api/v1/users"),
        ("api users, -created_at", "/api/v1/users?sort=-created_at"),
        ("api users, search", "/api/v1/users?q=u0001"),
        ("api groups", "/api/v1/project-groups"),
        ("api groups, -created_at", "/api/v1/project-groups?sort=-created_at"),
        ("api groups, search", "/api/v1/project-groups?q=grp0001"),
        ("api members (crowd)", members),
        ("api members, -username", f"{members}?sort=-username"),
        ("api members, search", f"{members}?q=u0001"),
        ("api tokens", tokens),
        ("api tokens, -created_at (console)", f"{tokens}?sort=-created_at"),
        ("api tokens, -last_used_at", f"{tokens}?sort=-last_used_at"),
        ("api tokens, search", f"{tokens}?q=tok0001"),
        ("api audit log", audit),
        ("api audit log, actor", f"{audit}?actor=u000007"),
        ("api audit log, action", f"{audit}?action=tag.delete"),
        ("api audit log, registry", f"{audit}?registry=p001"),
        ("api audit log, outcome", f"{audit}?outcome=denied"),
        ("api audit log, search", f"{audit}?q=img0001"),
    ]


DEEP_PAGE_SIZE = 100


def deep_cases(
    server: Server, authorization: str, size: int, *, accounts: bool = False, only: str = ""
) -> list[tuple[str, str]]:
    """The page in the middle of the `ci` tags and of the platform images (`accounts`: of
    the users, `crowd`'s members, admin's tokens and the audit log), 100 a page: by its
    cursor when the list answers one (`next`), as a client paging through follows it; else
    by its number (page size/200), which reads every row before it. Only the lists whose
    label matches `only`."""
    tags = f"/api/v1/registries/{CI_REGISTRY}/images/{CI_IMAGE}/-/tags"
    found = []
    lists = [
        ("api tags, deep page (middle)", tags, size),
        ("api platform images, deep page (middle)", "/api/v1/platform/images", size // 2),
    ]
    if accounts:
        lists = [
            ("api users, deep page (middle)", "/api/v1/users", size),
            ("api members, deep page (middle)", f"/api/v1/project-groups/{CROWD}/members", size),
            ("api tokens, deep page (middle)", "/api/v1/users/admin/tokens", size),
            ("api audit log, deep page (middle)", "/api/v1/audit-log", size),
        ]
    for label, path, count in lists:
        if not re.search(only, label):
            continue
        middle = max(1, count // (2 * DEEP_PAGE_SIZE))
        first = f"{path}?page_size={DEEP_PAGE_SIZE}"
        headers = {"Authorization": authorization}
        answer = httpx.get(server.url + first, headers=headers, timeout=60.0).json()
        if "next" not in answer or middle == 1:
            found.append((label, f"{first}&page={middle}"))
            continue
        for _ in range(middle - 1):
            cursor = answer["next"]
            answer = httpx.get(
                server.url + path,
                params={"page_size": DEEP_PAGE_SIZE, "cursor": cursor},
                headers=headers,
                timeout=60.0,
            ).json()
        found.append((label, f"{first}&cursor={cursor}"))
    return found


@dataclass
class Figure:
    rate: float  # requests/s
    cpu_ms: float  # server CPU per request


def measure(server: Server, path: str, authorization: str, seconds: int) -> Figure:
    url = server.url + path
    check = httpx.get(url, headers={"Authorization": authorization}, timeout=60.0)
    if check.status_code != 200:
        raise RuntimeError(f"GET {path}: {check.status_code} {check.text[:300]}")
    argv = [
        "wrk",
        "-t1",
        "-c4",
        f"-d{seconds}s",
        "--timeout",
        "60s",
        "-H",
        f"Authorization: {authorization}",
        url,
    ]
    subprocess.run([*argv[:3], "-d1s", *argv[4:]], capture_output=True, check=True)  # warm-up
    cpu_before = server.cpu_seconds()
    output = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    cpu = server.cpu_seconds() - cpu_before
    if "Non-2xx" in output:
        raise RuntimeError(f"GET {path}: non-2xx answers under load\n{output}")
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    return Figure(rate, 1000 * cpu / max(requests, 1))


def bearer_token(server: Server, basic: str) -> str:
    """A token from our realm for the catalog and the `ci` image, as docker would send it:
    Basic credentials would measure the password hash on every request instead of the list."""
    scopes = ["registry:catalog:*", f"repository:{CI_REGISTRY}/{CI_IMAGE}:pull"]
    response = httpx.get(
        f"{server.url}/auth/token",
        params=[("service", "ociregistry"), *(("scope", scope) for scope in scopes)],
        headers={"Authorization": basic},
    )
    response.raise_for_status()
    return "Bearer " + response.json()["token"]


@contextmanager
def workspace(keep: bool) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="growth-bench-"))
    try:
        yield folder
    finally:
        if keep:
            log(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--seconds", type=int, default=2, help="wrk duration per request")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the data folder")
    parser.add_argument(
        "--only", default="", help="measure only the requests whose label matches this regexp"
    )
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="postgresql: a throw-away cluster (tests/support/pgcluster.py)",
    )
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    if shutil.which("wrk") is None:
        parser.error("wrk is needed (apt-get install wrk)")

    with workspace(args.keep) as folder, database(args.database) as (database_url, postmaster):
        data_dir = folder / "data"
        password = secrets.token_urlsafe(12)
        admin_password = secrets.token_urlsafe(12)
        env = {**os.environ, "OCIREGISTRY_ADMIN_PASSWORD": admin_password}
        env["OCIREGISTRY_PULL_COUNTING"] = "0"  # list costs only
        env["OCIREGISTRY_TOKEN_TTL_SECONDS"] = "3600"
        env["OCIREGISTRY_AUDIT_LOG_RETENTION_DAYS"] = "0"  # the seeded events are old
        if database_url:
            env["OCIREGISTRY_DATABASE_URL"] = database_url
        else:
            database_url = f"sqlite+aiosqlite:///{data_dir / 'registry.db'}"
        server = Server(data_dir, args.workers, env, postmaster)
        server.start()  # migrates the schema and makes the signing key
        server.stop()
        server.cli("user", "add", USER, "--password-stdin", stdin=password + "\n")
        for name in USER_REGISTRIES:
            public = ["--public"] if name in PUBLIC_REGISTRIES else []
            server.cli("registry", "create", name, "--owner", USER, *public)
        for name in PLATFORM_REGISTRIES:
            server.cli("registry", "create", name, "--platform")
        basic = "Basic " + base64.b64encode(f"{USER}:{password}".encode()).decode()
        admin_basic = "Basic " + base64.b64encode(f"admin:{admin_password}".encode()).decode()
        seeded = Seeded()
        table: dict[str, dict[int, Figure]] = {}
        try:
            for size in sizes:
                log(f"seeding to {size:,} images and {size:,} tags of {CI_REGISTRY}/{CI_IMAGE}")
                started = time.monotonic()
                seed(database_url, seeded, size)
                log(f"seeded in {time.monotonic() - started:.1f} s; measuring")
                server.start()
                try:
                    authorization = bearer_token(server, basic)
                    admin = bearer_token(server, admin_basic)
                    chosen = [
                        (label, path, authorization)
                        for label, path in cases()
                        + deep_cases(server, authorization, size, only=args.only)
                    ]
                    chosen += [
                        (label, path, admin)
                        for label, path in account_cases()
                        + deep_cases(server, admin, size, accounts=True, only=args.only)
                    ]
                    for label, path, who in chosen:
                        if re.search(args.only, label):
                            table.setdefault(label, {})[size] = measure(
                                server, path, who, args.seconds
                            )
                finally:
                    server.stop()
        finally:
            server.stop()
        print_table(table, sizes, args.database)
    return 0


@contextmanager
def database(kind: str) -> Iterator[tuple[str, int | None]]:
    """The URL of an empty PostgreSQL database on a cluster of its own and its postmaster's
    pid, or ("", None) for SQLite (in the data folder, as the server makes it)."""
    if kind == "sqlite":
        yield "", None
        return
    sys.path.insert(0, str(TESTS_DIR))
    from support.pgcluster import PostgresCluster  # only for this option

    cluster = PostgresCluster().start()
    try:
        url = cluster.create_database("growth")
        postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
        yield url, postmaster
    finally:
        cluster.stop()


def print_table(table: dict[str, dict[int, Figure]], sizes: list[int], kind: str) -> None:
    first, last = sizes[0], sizes[-1]
    head = " | ".join(f"{size:,}" for size in sizes)
    print(f"| request: req/s (server CPU per request) | {head} | cost {last:,}/{first:,} |")
    print("|---" * (len(sizes) + 2) + "|")
    for label, figures in table.items():
        cells = " | ".join(
            f"{figures[size].rate:,.0f} ({figures[size].cpu_ms:.2f} ms)" for size in sizes
        )
        ratio = figures[last].cpu_ms / figures[first].cpu_ms if figures[first].cpu_ms else 0.0
        print(f"| {label} | {cells} | {ratio:.1f}x |")
    print(
        f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {NAMES[kind]}, 1 worker, wrk -t1 -c4,"
        " Bearer token; cost = server CPU per request"
        + (" (PostgreSQL's backends included)" if kind == "postgresql" else "")
        + " at the largest size / at the smallest (1.0: flat; the goal is <= 2). CPU per"
        " request holds on a busy machine; requests/s do not."
    )


if __name__ == "__main__":
    raise SystemExit(main())
