"""`ociregistry registry|image|tag …`: the registries, images and tags of the management API."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from ociregistry.catalog.immutable import check_patterns
from ociregistry.catalog.listings import Page, RegistryView
from ociregistry.catalog.usage import check_quota
from ociregistry.cli.base import output, run_services, say, settings_of
from ociregistry.content.gc import CollectionReport, GarbageCollector
from ociregistry.names import check_labels, check_remark
from ociregistry.services import Services

ALL = Page(1, 10_000)
REGISTRY_COLUMNS = [
    "name",
    "id",
    "kind",
    "public",
    "status",
    "project_group",
    "image_count",
    "pull_count",
    "size_bytes",
    "unique_bytes",
    "quota_bytes",
    "immutable_tags",
    "labels",
    "created_at",
]


def _registry_row(view: RegistryView) -> dict[str, Any]:
    row = asdict(view)
    row["id"] = row.pop("resource_id")
    del row["caller_role"]  # the operator is no caller of the policy
    return row


def _labels(values: list[str] | None) -> dict[str, str]:
    labels = {}
    for value in values or []:
        key, _, label_value = value.partition("=")
        labels[key] = label_value
    return check_labels(labels)


def registry_create(args: argparse.Namespace) -> int:
    async def work(parts: Services) -> RegistryView:
        await parts.registries.create(
            args.name,
            public=args.public,
            kind="platform" if args.platform else "user",
            remark=check_remark(args.remark),
            owner=args.owner,
            group=args.group,
            labels=_labels(args.label),
        )
        return await parts.listings.get_registry(args.name)

    view = run_services(settings_of(args), work)
    visibility = "public" if view.public else "private"
    say(
        args,
        f"created {view.kind} registry {view.name} ({view.resource_id}), {visibility}",
        **_registry_row(view),
    )
    return 0


def registry_list(args: argparse.Namespace) -> int:
    async def work(parts: Services) -> list[RegistryView]:
        views: list[RegistryView] = []
        for scope in ("user", "platform"):
            found, *_ = await parts.listings.list_registries(scope=scope, page=ALL)
            views += found
        return sorted(views, key=lambda view: view.name)

    rows = [_registry_row(v) for v in run_services(settings_of(args), work)]
    output(args, rows, REGISTRY_COLUMNS)
    return 0


def registry_update(args: argparse.Namespace) -> int:
    values: dict[str, Any] = {}
    if args.public is not None:
        values["public"] = args.public
    if args.remark is not None:
        values["remark"] = check_remark(args.remark)
    if args.label is not None:
        values["labels"] = _labels(args.label)
    if args.quota_bytes is not None:
        values["quota_bytes"] = check_quota(args.quota_bytes)
    if args.immutable_tags is not None:
        patterns = [p.strip() for p in args.immutable_tags.split(",") if p.strip()]
        values["immutable_tags"] = check_patterns(patterns)
    view = run_services(
        settings_of(args), lambda parts: parts.listings.update_registry(args.name, **values)
    )
    say(args, f"updated registry {view.name}", **_registry_row(view))
    return 0


def registry_delete(args: argparse.Namespace) -> int:
    run_services(
        settings_of(args),
        lambda parts: parts.registries.delete(
            args.name, delete_images=args.delete_images, wait=True
        ),
    )
    say(args, f"deleted registry {args.name}", name=args.name, deleted=True)
    return 0


def image_list(args: argparse.Namespace) -> int:
    async def work(parts: Services) -> list[Any]:
        # A missing registry is an error, not an empty list.
        await parts.listings.get_registry(args.registry)
        found, *_ = await parts.listings.list_images(args.registry, page=ALL)
        return found

    views = run_services(settings_of(args), work)
    rows = [
        {
            "name": v.name,
            "full_name": f"{v.registry}/{v.name}",
            "latest_tag": v.latest_tag,
            "tag_count": v.tag_count,
            "pull_count": v.pull_count,
            "size_bytes": v.size_bytes,
            "created_at": v.created_at,
            "updated_at": v.updated_at,
        }
        for v in views
    ]
    output(
        args, rows, ["name", "latest_tag", "tag_count", "pull_count", "size_bytes", "created_at"]
    )
    return 0


def image_delete(args: argparse.Namespace) -> int:
    run_services(
        settings_of(args), lambda parts: parts.listings.delete_image(args.registry, args.image)
    )
    say(args, f"deleted image {args.registry}/{args.image}", deleted=True)
    return 0


def tag_list(args: argparse.Namespace) -> int:
    views, *_ = run_services(
        settings_of(args),
        lambda parts: parts.listings.list_tags(args.registry, args.image, page=ALL),
    )
    rows = [
        {
            "name": v.name,
            "digest": v.digest,
            "media_type": v.media_type,
            "size_bytes": v.size_bytes,
            "pull_count": v.pull_count,
            "created_at": v.created_at,
            "platforms": v.platforms,
        }
        for v in views
    ]
    output(args, rows, ["name", "digest", "pull_count", "size_bytes", "platforms", "created_at"])
    return 0


def tag_delete(args: argparse.Namespace) -> int:
    last = run_services(
        settings_of(args),
        lambda parts: parts.listings.delete_tag(args.registry, args.image, args.tag),
    )
    note = "; it was the image's last tag, so the image went too" if last else ""
    say(args, f"deleted tag {args.tag}{note}", deleted=True, image_deleted=last)
    return 0


def collect_garbage(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    grace = settings.gc_grace_seconds if args.grace_seconds is None else args.grace_seconds

    async def work(parts: Services) -> CollectionReport:
        collector = GarbageCollector(parts.db, parts.blobs.driver, grace_seconds=grace)
        return await collector.collect(delete_untagged=args.delete_untagged, dry_run=args.dry_run)

    report = run_services(settings, work)
    say(args, gc_summary(report, dry_run=args.dry_run, grace=grace), **asdict(report))
    return 0


def gc_summary(report: CollectionReport, *, dry_run: bool, grace: int) -> str:
    """What a collection did, or would do, in words; and what the grace period held back."""
    if dry_run:
        text = f"dry run: would free {report.bytes_freed} bytes in {report.blobs_deleted} blobs"
        if report.manifests_deleted:
            text += f" and would delete {report.manifests_deleted} untagged manifests"
    else:
        text = (
            f"freed {report.bytes_freed} bytes in {report.blobs_deleted} blobs; deleted "
            f"{report.manifests_deleted} untagged manifests and {report.images_deleted} "
            "empty images"
        )
    if report.blobs_held:
        text += (
            f"\nthe grace period ({grace} s) holds back {report.blobs_held} unreferenced blobs "
            f"({report.bytes_held} bytes) younger than that, e.g. from a delete just now; "
            "--grace-seconds 0 includes them (only when no push is in flight)"
        )
    return text


def _seconds(value: str) -> int:
    if not value.isascii() or not value.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of seconds (0 or more)")
    return int(value)


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    gc = commands.add_parser(
        "gc", parents=[common], help="reclaim blob space (also runs in the server on a schedule)"
    )
    gc.add_argument(
        "--dry-run", action="store_true", help="report what would be freed, delete nothing"
    )
    gc.add_argument(
        "--delete-untagged",
        action="store_true",
        help="also delete manifests no tag, index or subject needs",
    )
    gc.add_argument(
        "--grace-seconds",
        type=_seconds,
        help="leave blobs younger than this (default: the gc_grace_seconds setting)",
    )
    gc.set_defaults(handler=collect_garbage)

    registry = commands.add_parser("registry", help="registries").add_subparsers(
        dest="registry_command", required=True
    )
    create = registry.add_parser("create", parents=[common], help="create a registry")
    create.add_argument("name", help="2-63 characters of a-z 0-9 . _ -")
    create.add_argument("--public", action="store_true", help="anyone may view and pull")
    create.add_argument("--platform", action="store_true", help="a platform registry")
    create.add_argument("--remark", default="", help="free text shown with the registry")
    create.add_argument("--owner", default="admin", help="owning user (default admin)")
    create.add_argument("--group", help="project group (default: the owner's own group)")
    create.add_argument(
        "--label", action="append", metavar="KEY=VALUE", help="a label (repeat for several)"
    )
    create.set_defaults(handler=registry_create)
    registry.add_parser("list", parents=[common], help="list registries").set_defaults(
        handler=registry_list
    )
    update = registry.add_parser("update", parents=[common], help="change a registry")
    update.add_argument("name", help="the registry")
    update.add_argument(
        "--public",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="make it public (--no-public: private)",
    )
    update.add_argument("--remark", help="new remark")
    update.add_argument("--quota-bytes", type=int, help="storage quota in bytes; 0: none")
    update.add_argument(
        "--immutable-tags",
        metavar="PATTERNS",
        help="tags that never move once pushed, comma-separated ('v*,release-*'; '': none)",
    )
    update.add_argument(
        "--label",
        action="append",
        metavar="KEY=VALUE",
        help="replace the labels (repeat for several)",
    )
    update.set_defaults(handler=registry_update)
    remove = registry.add_parser("delete", parents=[common], help="delete a registry")
    remove.add_argument("name", help="the registry")
    remove.add_argument(
        "--delete-images", action="store_true", help="also delete every image it holds"
    )
    remove.set_defaults(handler=registry_delete)

    image = commands.add_parser("image", help="images of a registry").add_subparsers(
        dest="image_command", required=True
    )
    images = image.add_parser("list", parents=[common], help="list the images of a registry")
    images.add_argument("registry", help="the registry")
    images.set_defaults(handler=image_list)
    image_remove = image.add_parser("delete", parents=[common], help="delete an image")
    image_remove.add_argument("registry", help="the registry")
    image_remove.add_argument("image", help="the image's name inside the registry")
    image_remove.set_defaults(handler=image_delete)

    tag = commands.add_parser("tag", help="tags of an image").add_subparsers(
        dest="tag_command", required=True
    )
    tags = tag.add_parser("list", parents=[common], help="list the tags of an image")
    tags.add_argument("registry", help="the registry")
    tags.add_argument("image", help="the image's name inside the registry")
    tags.set_defaults(handler=tag_list)
    tag_remove = tag.add_parser("delete", parents=[common], help="delete a tag")
    tag_remove.add_argument("registry", help="the registry")
    tag_remove.add_argument("image", help="the image's name inside the registry")
    tag_remove.add_argument("tag", help="the tag to delete")
    tag_remove.set_defaults(handler=tag_delete)
