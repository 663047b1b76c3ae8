"""`errors.py` tells the truth: it holds every error a client can see, draws them as one tree,
no error changes its status or code per instance, no domain error carries HTTP headers (each
API's renderer makes them from the error's fields), and the management API's envelope for a
routing error is built from the error, not parsed back out of an OCI body."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import httpx

import ociregistry
from ociregistry import errors
from ociregistry.errors import RegistryError
from support.oci import push_blob
from support.server import RunningServer

SOURCE = Path(ociregistry.__file__).parent


def _import_everything() -> None:
    for module in pkgutil.walk_packages(ociregistry.__path__, "ociregistry."):
        if module.name.endswith("__main__") or ".migrations" in module.name:
            continue
        if module.name.startswith("ociregistry.conformance."):
            continue  # a client-side suite, with its own pytest plugins
        importlib.import_module(module.name)


def _all_subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _all_subclasses(sub)
    return found


def test_every_client_visible_error_lives_in_errors_py() -> None:
    _import_everything()
    elsewhere = sorted(
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in _all_subclasses(RegistryError)
        if cls.__module__ != "ociregistry.errors"
    )
    assert elsewhere == []


def test_the_docstring_draws_every_error() -> None:
    drawn = {line.strip("│├└─ ").split()[0] for line in errors.__doc__.splitlines() if "──" in line}
    defined = {
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value)
        and issubclass(value, RegistryError)
        and value is not RegistryError
    }
    assert defined <= drawn, f"not drawn in the tree: {sorted(defined - drawn)}"
    assert drawn <= defined | {"RegistryError"}, f"drawn but not defined: {drawn - defined}"


def test_code_and_status_belong_to_the_class() -> None:
    """No `self.status = …` or `self.code = …` anywhere in the package."""
    assigned = []
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = getattr(node, "targets", None) or [getattr(node, "target", None)]
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "self"
                    and target.attr in ("status", "code")
                ):
                    assigned.append(f"{path.relative_to(SOURCE)}:{node.lineno}")
    assert assigned == []


def test_domain_errors_carry_no_http_headers() -> None:
    assert "headers" not in inspect.signature(RegistryError.__init__).parameters
    _import_everything()
    for cls in _all_subclasses(RegistryError):
        assert "headers" not in inspect.signature(cls.__init__).parameters, cls


def test_app_does_not_parse_rendered_errors() -> None:
    tree = ast.parse((SOURCE / "app.py").read_text())
    calls = [
        ast.unparse(node.func)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("json.loads", "loads")
    ]
    assert calls == []


def test_routing_errors_in_each_api_envelope(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        missing = http.get("/api/v1/no-such-thing")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "NOT_FOUND"
        assert "/api/v1/no-such-thing" in missing.json()["error"]["message"]

        wrong_method = http.put("/api/v1/openapi.json")
        assert wrong_method.status_code == 405
        assert wrong_method.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
        assert "GET" in wrong_method.headers["allow"]

        oci = http.put("/v2/")
        assert oci.status_code == 405
        assert oci.json()["errors"][0]["code"] == "UNSUPPORTED"
        assert "PUT is not supported on /v2/" in oci.json()["errors"][0]["message"]


def test_error_fields_become_headers(server: RunningServer, registry: str) -> None:
    """A blob `Range` past the end and a chunk out of order: the HTTP layer turns the errors'
    fields (the blob's size, the upload's received bytes) into `Content-Range` and `Range`."""
    repo = f"{registry}/errors"
    with httpx.Client(base_url=server.url, timeout=30, auth=server.admin) as http:
        pushed = push_blob(http, repo, b"0123456789")
        assert pushed.status_code == 201, pushed.text
        digest = pushed.headers["docker-content-digest"]
        past_end = http.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": "bytes=50-60"})
        assert past_end.status_code == 416
        assert past_end.headers["content-range"] == "bytes */10"

        started = http.post(f"/v2/{repo}/blobs/uploads/")
        location = started.headers["location"]
        first = http.patch(location, content=b"abcd", headers={"Content-Range": "0-3"})
        assert first.status_code == 202
        late = http.patch(
            first.headers["location"], content=b"zz", headers={"Content-Range": "9-10"}
        )
        assert late.status_code == 416
        assert late.json()["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
        assert late.headers["range"] == "0-3"
        assert late.headers["docker-upload-uuid"] in late.headers["location"]
