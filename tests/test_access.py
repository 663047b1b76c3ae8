"""SPEC §2, the access table, as a test: every /v2 and token route, for every role, on a
private, a public and a platform registry (and on one that does not exist), with credentials
presented both ways clients do it: Basic on each /v2 request, and Bearer tokens from
`/auth/token` (the docker way).

This file is the reference for who may do what. The tables below are the rule; the tests only
walk them. Change a table only when the SPEC changes.

What a refusal looks like:
- anonymous: 401 UNAUTHORIZED with `WWW-Authenticate: Bearer realm="{base}/auth/token",
  service="ociregistry",scope="repository:<name>:<actions>"` naming exactly what the request needs;
- a signed-in caller who may not pull the registry (private, or missing): 404 NAME_UNKNOWN, the
  same for a private registry as for one that does not exist;
- a signed-in caller who may pull but not push or delete: 403 DENIED.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from authtools import (
    OCI_MANIFEST,
    Pushed,
    basic,
    bearer,
    cli,
    cli_all,
    describe,
    digest_of,
    granted,
    jwt_claims,
    oci_error,
    parse_challenge,
    push_blob,
    push_image,
    put_manifest,
    token_for,
)
from support.server import RunningServer

ROLES = ("anonymous", "stranger", "guest", "developer", "owner", "admin")
KINDS = ("private", "public", "platform", "missing")
ACTIONS = ("pull", "push", "delete")
MODES = ("basic", "bearer")

OK = "ok"  # the route's success status
AUTH = "401"  # 401 UNAUTHORIZED and a Bearer challenge for exactly the scope the request needs
UNKNOWN = "404"  # 404 NAME_UNKNOWN: as if the registry did not exist
DENIED = "403"  # 403 DENIED: the caller may see the registry, but not do this

# fmt: off
# SPEC §2. A row: who asks, for what; a column: the kind of registry asked about.
#                              private   public    platform  missing
ACCESS = {
    ("anonymous", "pull"):    (AUTH,     OK,       OK,       AUTH),
    ("anonymous", "push"):    (AUTH,     AUTH,     AUTH,     AUTH),
    ("anonymous", "delete"):  (AUTH,     AUTH,     AUTH,     AUTH),
    ("stranger",  "pull"):    (UNKNOWN,  OK,       OK,       UNKNOWN),
    ("stranger",  "push"):    (UNKNOWN,  DENIED,   DENIED,   UNKNOWN),
    ("stranger",  "delete"):  (UNKNOWN,  DENIED,   DENIED,   UNKNOWN),
    ("guest",     "pull"):    (OK,       OK,       OK,       UNKNOWN),
    ("guest",     "push"):    (DENIED,   DENIED,   DENIED,   UNKNOWN),
    ("guest",     "delete"):  (DENIED,   DENIED,   DENIED,   UNKNOWN),
    ("developer", "pull"):    (OK,       OK,       OK,       UNKNOWN),
    ("developer", "push"):    (OK,       OK,       DENIED,   UNKNOWN),
    ("developer", "delete"):  (OK,       OK,       DENIED,   UNKNOWN),
    ("owner",     "pull"):    (OK,       OK,       OK,       UNKNOWN),
    ("owner",     "push"):    (OK,       OK,       DENIED,   UNKNOWN),
    ("owner",     "delete"):  (OK,       OK,       DENIED,   UNKNOWN),
    ("admin",     "pull"):    (OK,       OK,       OK,       UNKNOWN),
    ("admin",     "push"):    (OK,       OK,       OK,       UNKNOWN),
    ("admin",     "delete"):  (OK,       OK,       OK,       UNKNOWN),
}

# Every /v2 route that names a repository. `{upload}` is an upload session an admin opened in
# the repository; `own_*` are a tag, a manifest and a blob pushed for this one request, so that
# a delete that succeeds takes nothing away from the others.
#   name                       method    path                                      needs     ok
ROUTES = [
    ("get manifest by tag",     "GET",    "/v2/{repo}/manifests/{tag}",             "pull",   200),
    ("head manifest by tag",    "HEAD",   "/v2/{repo}/manifests/{tag}",             "pull",   200),
    ("get manifest by digest",  "GET",    "/v2/{repo}/manifests/{digest}",          "pull",   200),
    ("head manifest by digest", "HEAD",   "/v2/{repo}/manifests/{digest}",          "pull",   200),
    ("get blob",                "GET",    "/v2/{repo}/blobs/{layer}",               "pull",   200),
    ("head blob",               "HEAD",   "/v2/{repo}/blobs/{layer}",               "pull",   200),
    ("list tags",               "GET",    "/v2/{repo}/tags/list",                   "pull",   200),
    ("list referrers",          "GET",    "/v2/{repo}/referrers/{digest}",          "pull",   200),
    ("push blob",               "POST",   "/v2/{repo}/blobs/uploads/?digest={blob}", "push",  201),
    ("open upload",             "POST",   "/v2/{repo}/blobs/uploads/",              "push",   202),
    ("upload status",           "GET",    "{upload}",                               "push",   204),
    ("upload chunk",            "PATCH",  "{upload}",                               "push",   202),
    ("finish upload",           "PUT",    "{upload}?digest={chunk}",                "push",   201),
    ("cancel upload",           "DELETE", "{upload}",                               "push",   204),
    ("put manifest",            "PUT",    "/v2/{repo}/manifests/{new_tag}",         "push",   201),
    ("delete tag",              "DELETE", "/v2/{repo}/manifests/{own_tag}",         "delete", 202),
    ("delete manifest",         "DELETE", "/v2/{repo}/manifests/{own_digest}",      "delete", 202),
    ("delete blob",             "DELETE", "/v2/{repo}/blobs/{own_blob}",            "delete", 202),
]
# What those that send a body send.
BODIES = {
    "push blob": "blob",
    "upload chunk": "chunk",
    "finish upload": "chunk",
    "put manifest": "manifest",
}

# A cross-repository mount of a blob of the column's registry into a repository the caller may
# push to (their own registry). It mounts only when the caller may pull the source; otherwise
# it is an ordinary new upload (202) that says nothing about the source.
MOUNTED = "201, mounted"
FALLBACK = "202, an upload session; nothing mounted"
#                   private    public     platform   missing
MOUNT = {
    "anonymous": (AUTH,      AUTH,      AUTH,      AUTH),  # may push nowhere
    "stranger":  (FALLBACK,  MOUNTED,   MOUNTED,   FALLBACK),
    "guest":     (MOUNTED,   MOUNTED,   MOUNTED,   FALLBACK),
    "developer": (MOUNTED,   MOUNTED,   MOUNTED,   FALLBACK),
    "owner":     (MOUNTED,   MOUNTED,   MOUNTED,   FALLBACK),
    "admin":     (MOUNTED,   MOUNTED,   MOUNTED,   FALLBACK),
}
# fmt: on

# The scope a client asks for (and a challenge names) for each action: docker asks for pull
# along with push.
SCOPE_ACTIONS = {"pull": "pull", "push": "pull,push", "delete": "delete"}
TAG = "1.0"

# Every answer carries its request id; one id for all keeps alike answers byte for byte alike.
SAME_REQUEST_ID = {"X-Request-Id": "same-for-every-request"}


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str
    needs: str
    ok: int

    @property
    def body(self) -> str | None:
        return BODIES.get(self.name)

    @property
    def slug(self) -> str:
        return self.name.replace(" ", "-")


ROUTE_LIST = [Route(*row) for row in ROUTES]


def expected(role: str, action: str, kind: str) -> str:
    return ACCESS[(role, action)][KINDS.index(kind)]


def allowed_actions(role: str, kind: str) -> set[str]:
    return {action for action in ACTIONS if expected(role, action, kind) == OK}


# -- the world: users, a project group, registries, one image in each ----------------------


@dataclass
class World:
    server: RunningServer
    http: httpx.Client  # no credentials of its own
    admin: httpx.Client  # the platform admin, for setting up and for checking effects
    credentials: dict[str, tuple[str, str] | None]
    registries: dict[str, str]  # kind -> registry name
    images: dict[str, Pushed] = field(default_factory=dict)  # kind -> the image pushed there
    own_registry: dict[str, str] = field(default_factory=dict)  # role -> one they may push to

    @property
    def url(self) -> str:
        return self.server.url

    def repo(self, kind: str) -> str:
        return f"{self.registries[kind]}/app"

    def image(self, kind: str) -> Pushed:
        """The image of `kind`'s registry; for a missing registry, the private one's values."""
        return self.images.get(kind) or self.images["private"]

    def authorization(self, role: str, mode: str, scopes: list[str]) -> dict[str, str]:
        """Headers presenting `role`'s credentials: Basic, or a token for `scopes` got from
        /auth/token with them (anonymously for anonymous) as docker does."""
        credentials = self.credentials[role]
        if mode == "bearer":
            return {"Authorization": bearer(token_for(self.http, credentials, scopes))}
        return {"Authorization": basic(*credentials)} if credentials else {}


PASSWORDS = {
    "stranger": "stranger-password-1",
    "guest": "guest-password-1",
    "developer": "developer-password-1",
    "owner": "owner-password-1",
}


@pytest.fixture(scope="module")
def world(server: RunningServer) -> Iterator[World]:
    users = {role: f"acc-{role}" for role in PASSWORDS}
    team = ["--owner", users["owner"], "--group", "acc-team"]
    registries = {kind: f"acc-{kind}" for kind in KINDS}
    cli_all(
        server,
        *(
            ("user", "add", users[role], "--password-stdin", "<", PASSWORDS[role] + "\n")
            for role in PASSWORDS
        ),
        ("registry", "create", registries["platform"], "--platform"),
    )
    cli(server, "group", "create", "acc-team", "--owner", users["owner"])
    own_registry = {role: f"acc-own-{role}" for role in ROLES[1:]}
    cli_all(
        server,
        ("group", "member", "acc-team", users["guest"], "guest"),
        ("group", "member", "acc-team", users["developer"], "developer"),
        ("registry", "create", registries["private"], *team),
        ("registry", "create", registries["public"], "--public", *team),
        # every signed-in user may push into a registry of their own
        *(
            ("registry", "create", name, "--owner", users.get(role, "admin"))
            for role, name in own_registry.items()
        ),
    )
    credentials: dict[str, tuple[str, str] | None] = {
        "anonymous": None,
        **{role: (users[role], PASSWORDS[role]) for role in PASSWORDS},
        "admin": server.admin,
    }
    with (
        httpx.Client(base_url=server.url, timeout=30, headers=SAME_REQUEST_ID) as http,
        httpx.Client(base_url=server.url, timeout=30, auth=server.admin) as admin,
    ):
        world = World(server, http, admin, credentials, registries)
        for kind in ("private", "public", "platform"):
            world.images[kind] = push_image(admin, world.repo(kind), f"acc {kind}", tag=TAG)
        world.own_registry.update(own_registry)
        world.own_registry["anonymous"] = world.own_registry["admin"]
        yield world


# -- one request of the table ---------------------------------------------------------------


def _slug(*parts: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", " ".join(parts).lower()).strip("-")


def _prepare(world: World, route: Route, kind: str, cell: str) -> tuple[dict[str, str], bytes]:
    """The values of `route`'s path for this request, and its body. What the request acts on
    (a tag, a manifest, a blob, an upload) is made for it alone, by the admin."""
    repo, image = world.repo(kind), world.image(kind)
    blob = f"a blob pushed by {cell}".encode()
    chunk = f"a chunk sent by {cell}".encode()
    values = {
        "repo": repo,
        "tag": TAG,
        "digest": image.digest,
        "layer": image.layer_digest,
        "blob": digest_of(blob),
        "chunk": digest_of(chunk),
        "new_tag": f"p-{cell}"[:128],
        "own_tag": TAG,
        "own_digest": image.digest,
        "own_blob": image.layer_digest,
        "upload": f"/v2/{repo}/blobs/uploads/{uuid.uuid4()}",
    }
    if kind != "missing":
        admin = world.admin
        if "{own_tag}" in route.path:
            values["own_tag"] = f"t-{cell}"[:128]
            put_manifest(admin, repo, values["own_tag"], image.manifest)
        if "{own_digest}" in route.path:
            values["own_digest"] = push_image(admin, repo, cell, layer=image.layer).digest
        if "{own_blob}" in route.path:
            blob = f"a blob to delete, for {cell}".encode()
            push_blob(admin, repo, blob)
            values["own_blob"] = digest_of(blob)
        if "{upload}" in route.path:
            response = admin.post(f"/v2/{repo}/blobs/uploads/")
            assert response.status_code == 202, describe(response)
            values["upload"] = httpx.URL(response.headers["Location"]).path
    bodies = {None: b"", "blob": blob, "chunk": chunk, "manifest": image.manifest}
    return values, bodies[route.body]


def _send(
    world: World, route: Route, values: dict[str, str], body: bytes, headers: dict[str, str]
) -> httpx.Response:
    content_type = OCI_MANIFEST if route.body == "manifest" else "application/octet-stream"
    if body:
        headers = {**headers, "Content-Type": content_type}
    return world.http.request(
        route.method, route.path.format(**values), content=body or None, headers=headers
    )


def _state(world: World, route: Route, values: dict[str, str]) -> object:
    """What the route would change, as the admin sees it (None for routes that change nothing
    the admin can observe)."""
    admin, repo = world.admin, values["repo"]
    if route.name == "push blob":
        return admin.head(f"/v2/{repo}/blobs/{values['blob']}").status_code
    if route.name == "finish upload":
        return admin.head(f"/v2/{repo}/blobs/{values['chunk']}").status_code
    if route.name == "put manifest":
        return admin.head(f"/v2/{repo}/manifests/{values['new_tag']}").status_code
    if route.name == "delete tag":
        return admin.head(f"/v2/{repo}/manifests/{values['own_tag']}").status_code
    if route.name == "delete manifest":
        return admin.head(f"/v2/{repo}/manifests/{values['own_digest']}").status_code
    if route.name == "delete blob":
        return admin.head(f"/v2/{repo}/blobs/{values['own_blob']}").status_code
    if route.name in ("upload status", "upload chunk", "cancel upload"):
        response = admin.get(values["upload"])
        return response.status_code, response.headers.get("Range")
    return None


def check_refusal(
    world: World, response: httpx.Response, want: str, scope: str, context: str
) -> None:
    """`response` is the refusal `want` (AUTH, UNKNOWN or DENIED) says it must be."""
    code = oci_error(response)
    has_body = response.request.method != "HEAD"
    if want == AUTH:
        assert response.status_code == 401, context
        assert not has_body or code == "UNAUTHORIZED", context
        scheme, challenge = parse_challenge(response.headers.get("www-authenticate"))
        assert scheme == "bearer", f"{context}\nchallenge: {response.headers}"
        assert challenge.get("realm") == f"{world.url}/auth/token", context
        assert challenge.get("service") == "ociregistry", context
        assert challenge.get("scope") == scope, f"{context}\nchallenge: {challenge}"
    elif want == UNKNOWN:
        assert response.status_code == 404, context
        assert not has_body or code == "NAME_UNKNOWN", context
    else:
        assert want == DENIED
        assert response.status_code == 403, context
        assert not has_body or code == "DENIED", context


CELLS = [
    pytest.param(mode, role, kind, route, id=f"{mode}-{role}-{kind}-{route.slug}")
    for mode in MODES
    for role in ROLES
    for kind in KINDS
    for route in ROUTE_LIST
]


@pytest.mark.parametrize(("mode", "role", "kind", "route"), CELLS)
def test_route(world: World, mode: str, role: str, kind: str, route: Route) -> None:
    want = expected(role, route.needs, kind)
    cell = _slug(mode, role, kind, route.name)
    values, body = _prepare(world, route, kind, cell)
    scope = f"repository:{values['repo']}:{SCOPE_ACTIONS[route.needs]}"
    before = _state(world, route, values)

    response = _send(world, route, values, body, world.authorization(role, mode, [scope]))

    context = (
        f"\n  who:      {role} ({mode} credentials)\n  registry: {kind} ({values['repo']})"
        f"\n  route:    {route.name}\n  expected: {want if want != OK else route.ok}"
        f"\n  actual:   {describe(response)}"
    )
    if want == OK:
        assert response.status_code == route.ok, context
    else:
        check_refusal(world, response, want, scope, context)

    after = _state(world, route, values)
    if kind == "missing":  # no request may bring a registry into being
        response = world.admin.get(f"/v2/{values['repo']}/tags/list")
        assert (response.status_code, oci_error(response)) == (404, "NAME_UNKNOWN"), context
    elif want != OK:
        assert after == before, f"a refused request changed something: {before} -> {after}"
        if route.name == "put manifest":
            assert after == 404, context
    elif route.name in ("push blob", "finish upload", "put manifest"):
        assert after == 200, f"{context}\nthe push did not take effect"
    elif route.name in ("delete tag", "delete manifest", "delete blob", "cancel upload"):
        assert after != before, f"{context}\nthe delete did not take effect"
    if want == OK and route.name == "get manifest by tag":
        assert response.content == world.image(kind).manifest, context
    if want == OK and route.name == "list tags":
        assert TAG in response.json()["tags"], context


# -- cross-repository mounts ----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("mode", MODES)
def test_mount(world: World, mode: str, role: str, kind: str) -> None:
    want = MOUNT[role][KINDS.index(kind)]
    source = world.repo(kind)
    target = f"{world.own_registry[role]}/{_slug('m', mode, role, kind)}"
    layer = world.image(kind).layer_digest
    scopes = [f"repository:{target}:pull,push", f"repository:{source}:pull"]
    headers = world.authorization(role, mode, scopes)

    response = world.http.post(
        f"/v2/{target}/blobs/uploads/", params={"mount": layer, "from": source}, headers=headers
    )

    context = (
        f"\n  who:      {role} ({mode} credentials)\n  mount:    {layer} from {kind} ({source})"
        f" into {target}\n  expected: {want}\n  actual:   {describe(response)}"
    )
    present = world.admin.head(f"/v2/{target}/blobs/{layer}").status_code
    if want == MOUNTED:
        assert response.status_code == 201, context
        assert response.headers.get("docker-content-digest") == layer, context
        assert present == 200, context
    elif want == FALLBACK:
        assert response.status_code == 202, context
        assert "docker-content-digest" not in response.headers, context
        location = httpx.URL(response.headers["location"]).path
        assert location.startswith(f"/v2/{target}/blobs/uploads/"), context
        assert present == 404, f"{context}\nthe blob was mounted anyway"
    else:  # the challenge names the source too, so that one token covers the mount
        check_refusal(world, response, want, " ".join(scopes), context)
        assert present == 404, f"{context}\nthe blob was mounted anyway"


# -- the catalog ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("mode", MODES)
def test_catalog_lists_only_what_the_caller_may_pull(world: World, mode: str, role: str) -> None:
    headers = world.authorization(role, mode, ["registry:catalog:*"])
    response = world.http.get("/v2/_catalog", headers=headers)
    if role == "anonymous" and mode == "basic":  # no credentials: challenged to sign in
        assert response.status_code == 401, describe(response)
        _, challenge = parse_challenge(response.headers.get("www-authenticate"))
        assert challenge.get("scope") == "registry:catalog:*", challenge
        return
    assert response.status_code == 200, f"{role} ({mode}): {describe(response)}"
    ours = {name for name in world.registries.values()}
    listed = {r for r in response.json()["repositories"] if r.split("/")[0] in ours}
    want = {world.repo(kind) for kind in KINDS if expected(role, "pull", kind) == OK}
    assert listed == want, f"{role} ({mode}): _catalog lists {sorted(listed)}, not {sorted(want)}"


# -- /v2/ -----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("mode", MODES)
def test_api_version_check(world: World, mode: str, role: str) -> None:
    """`GET /v2/` is where clients learn where to log in: 401 with the token endpoint's address
    to a caller without credentials, 200 to anyone with some (an anonymous token too)."""
    response = world.http.get("/v2/", headers=world.authorization(role, mode, []))
    if role == "anonymous" and mode == "basic":
        assert response.status_code == 401, describe(response)
        scheme, challenge = parse_challenge(response.headers.get("www-authenticate"))
        assert scheme == "bearer", response.headers
        assert challenge == {"realm": f"{world.url}/auth/token", "service": "ociregistry"}
    else:
        assert response.status_code == 200, f"{role} ({mode}): {describe(response)}"


# -- the token endpoint ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grant", "role", "kind"),
    [
        pytest.param(grant, role, kind, id=f"{grant}-{role}-{kind}")
        for grant in ("GET", "POST password")
        for role in ROLES
        for kind in KINDS
        if grant == "GET" or role != "anonymous"  # the password grant needs a password
    ],
)
def test_token_grants_exactly_what_is_allowed(
    world: World, grant: str, role: str, kind: str
) -> None:
    """A token asked for pull, push and delete carries exactly the allowed subset."""
    credentials = world.credentials[role]
    repo = world.repo(kind)
    scope = f"repository:{repo}:pull,push,delete"
    if grant == "GET":
        headers = {"Authorization": basic(*credentials)} if credentials else {}
        response = world.http.get(
            "/auth/token", params={"service": "ociregistry", "scope": scope}, headers=headers
        )
    else:
        assert credentials is not None
        form = {
            "grant_type": "password",
            "username": credentials[0],
            "password": credentials[1],
            "service": "ociregistry",
            "scope": scope,
            "client_id": "test",
        }
        response = world.http.post("/auth/token", data=form)
    assert response.status_code == 200, describe(response)
    body = response.json()
    token = body.get("token") or body["access_token"]
    want = allowed_actions(role, kind)
    assert granted(token) == ({f"repository:{repo}": want} if want else {}), (
        f"{role} asking {scope} via {grant} got {jwt_claims(token)['access']}, not {sorted(want)}"
    )
    assert jwt_claims(token)["sub"] == (credentials[0] if credentials else "")
    if grant != "GET":
        expected_scope = f"repository:{repo}:{','.join(sorted(want))}" if want else ""
        assert body["scope"] == expected_scope, body


@pytest.mark.parametrize("role", ROLES)
def test_one_token_for_several_scopes(world: World, role: str) -> None:
    """Docker asks for several scopes at once (a mount: the target and the source); each is
    narrowed on its own, and `registry:catalog:*` lets the token list the catalog."""
    scopes = [f"repository:{world.repo(kind)}:pull,push,delete" for kind in KINDS]
    token = token_for(world.http, world.credentials[role], [*scopes, "registry:catalog:*"])
    want = {
        f"repository:{world.repo(kind)}": allowed_actions(role, kind)
        for kind in KINDS
        if allowed_actions(role, kind)
    }
    want["registry:catalog"] = {"*"}
    assert granted(token) == want, f"{role}: {jwt_claims(token)['access']}"


# -- a private registry looks exactly like a missing one to an outsider ---------------------


@pytest.mark.parametrize("route", ROUTE_LIST, ids=lambda route: route.slug)
@pytest.mark.parametrize("role", ["anonymous", "stranger"])
def test_private_registry_looks_missing(world: World, role: str, route: Route) -> None:
    private, missing = world.registries["private"], world.registries["missing"]
    answers = []
    template, body = _prepare(world, route, "missing", _slug("alike", role, route.name))
    for kind in ("private", "missing"):
        values = {
            key: value.replace(missing, world.registries[kind]) for key, value in template.items()
        }
        response = _send(world, route, values, body, world.authorization(role, "basic", []))
        text = response.text.replace(world.registries[kind], "<registry>")
        if role == "stranger" and route.needs == "push":
            # A user who could create the missing registry is told how (issue 10, point 11),
            # one who may not know the private one exists nothing more; any signed-in user
            # learns whether a registry name is taken by creating it anyway. Beyond that
            # hint, the answers are alike.
            message = response.json()["errors"][0]["message"]
            assert ("create it first" in message) == (kind == "missing"), describe(response)
            text = str(oci_error(response))
        challenge = response.headers.get("www-authenticate", "")
        answers.append(
            (
                response.status_code,
                oci_error(response),
                text,
                challenge.replace(world.registries[kind], "<registry>"),
            )
        )
    assert answers[0] == answers[1], (
        f"{role}, {route.name}: the private registry {private} answers {answers[0]}, "
        f"a missing one {missing} answers {answers[1]}"
    )
