"""Names as SPEC §1 defines them: registries, images (repositories) and tags.

Every name is checked here before it reaches a query or a storage path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ociregistry.errors import NameInvalid

MAX_REPOSITORY_LENGTH = 255

_REGISTRY = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?")
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")


def is_registry_name(name: str) -> bool:
    return len(name) >= 2 and _REGISTRY.fullmatch(name) is not None


def is_tag(reference: str) -> bool:
    return _TAG.fullmatch(reference) is not None


def check_registry_name(name: str) -> str:
    if not is_registry_name(name):
        raise NameInvalid(
            f"invalid registry name {name!r}: use 2-63 characters of a-z, 0-9, '.', '_' and '-', "
            "starting and ending with a letter or digit",
            detail={"name": name},
        )
    return name


@dataclass(frozen=True, slots=True)
class RepositoryName:
    """`{registry}/{image}`: an OCI repository, which the product calls an image."""

    registry: str
    image: str

    @property
    def full(self) -> str:
        return f"{self.registry}/{self.image}"

    def __str__(self) -> str:
        return self.full

    @classmethod
    def parse(cls, name: str) -> RepositoryName:
        registry, slash, image = name.partition("/")
        problem = None
        if len(name) > MAX_REPOSITORY_LENGTH:
            problem = f"is {len(name)} characters long; the limit is {MAX_REPOSITORY_LENGTH}"
        elif not slash or not image:
            problem = "must be {registry}/{image}, e.g. team-a/app"
        elif not is_registry_name(registry):
            problem = (
                f"starts with {registry!r}, which is not a valid registry name "
                "(2-63 characters of a-z 0-9 . _ -)"
            )
        elif _IMAGE.fullmatch(image) is None:
            problem = (
                "has an invalid image path: use lower-case path components of "
                "[a-z0-9] separated by '.', '_', '__' or '-', joined by '/'"
            )
        if problem:
            shown = name[:300]
            raise NameInvalid(f"repository name {shown!r} {problem}", detail={"name": shown})
        return cls(registry, image)


MAX_LABELS = 20
MAX_LABEL_KEY = 128
MAX_LABEL_VALUE = 256
MAX_REMARK = 1024


def check_labels(labels: object) -> dict[str, str]:
    """A registry's labels (cloud resource tags): at most 20, keys 1-128 characters, values
    0-256 characters, all strings."""
    if not isinstance(labels, dict):
        raise NameInvalid("labels must be an object of strings", detail={"field": "labels"})
    if len(labels) > MAX_LABELS:
        raise NameInvalid(
            f"a registry has at most {MAX_LABELS} labels, not {len(labels)}",
            detail={"field": "labels"},
        )
    for key, value in labels.items():
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_LABEL_KEY:
            raise NameInvalid(
                f"label keys have 1-{MAX_LABEL_KEY} characters", detail={"field": "labels"}
            )
        if not isinstance(value, str) or len(value) > MAX_LABEL_VALUE:
            raise NameInvalid(
                f"the value of label {key[:50]!r} must be a string of at most "
                f"{MAX_LABEL_VALUE} characters",
                detail={"field": "labels", "key": key[:50]},
            )
    return dict(labels)


def check_remark(remark: object) -> str:
    if not isinstance(remark, str) or len(remark) > MAX_REMARK:
        raise NameInvalid(
            f"remark must be a string of at most {MAX_REMARK} characters",
            detail={"field": "remark"},
        )
    return remark
