"""`ociregistry retention …`: a registry's retention policy, its dry runs (plans) and applying
one, as the API does (catalog/retention_plans.py). The operator acts as a platform admin; the
policy changes and applied plans it makes go into the audit log as the API's do."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ociregistry.catalog.audit import AuditRecord
from ociregistry.cli.base import output, run_services, say, settings_of
from ociregistry.errors import InvalidArgument
from ociregistry.services import Services

ACTOR = "cli"
PLAN_COLUMNS = ["image", "digest", "tag", "verdict", "reason", "rule", "outcome"]
PLANS_COLUMNS = ["id", "created_at", "trigger", "status", "tags_kept", "tags_deleted"]


async def _audit(parts: Services, registry: str, action: str, target: str, detail: Any) -> None:
    await parts.audit.record(
        AuditRecord(
            actor=ACTOR,
            client="-",
            request_id=None,
            action=action,
            method="CLI",
            target=target,
            registry=registry,
            status=200,
            outcome="success",
            detail=detail,
        )
    )


def plan_rows(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """A plan as a table: each manifest, then each of its tags, with verdict and reason."""
    rows = []
    for item in plan["items"]:
        digest = item["digest"].split(":", 1)[-1][:12]
        rows.append({**item, "digest": digest, "tag": "-", "rule": None})
        rows += [
            {**tag, "image": item["image"], "digest": digest, "tag": tag["name"]}
            for tag in item["tags"]
        ]
    return rows


def _show_plan(args: argparse.Namespace, plan: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(plan, indent=2))
        return
    output(args, plan_rows(plan), PLAN_COLUMNS)
    summary = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in plan["summary"].items())
    print(f"plan {plan['id']} of {plan['registry']} ({plan['status']}): {summary}")
    result = plan["result"]
    if result is not None and plan["status"] == "applied":
        print(
            f"applied: {result['tags_deleted']} tags and {result['manifests_deleted']} "
            f"manifests deleted; {len(result['kept'])} kept because they changed since"
            + (
                " (interrupted, then finished by the background job)"
                if result.get("resumed")
                else ""
            )
        )
    elif result is not None:
        print(f"applying: {result['items_done']} items done so far")


def retention_show(args: argparse.Namespace) -> int:
    policy = run_services(
        settings_of(args), lambda parts: parts.retention.get_policy(args.registry)
    )
    print(json.dumps(policy, indent=2))
    return 0


def retention_set(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    try:
        body = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidArgument(f"the policy is not valid JSON: {error}") from None

    async def work(parts: Services) -> dict[str, Any]:
        policy = await parts.retention.set_policy(args.registry, body, ACTOR)
        target = f"/api/v1/registries/{args.registry}/retention"
        await _audit(parts, args.registry, "retention.policy", target, {"policy": body})
        return policy

    policy = run_services(settings_of(args), work)
    say(args, f"retention policy of {args.registry} set: {len(policy['rules'])} rules", **policy)
    return 0


def retention_plan(args: argparse.Namespace) -> int:
    plan = run_services(
        settings_of(args), lambda parts: parts.retention.make_plan(args.registry, ACTOR)
    )
    _show_plan(args, plan)
    return 0


def retention_plans(args: argparse.Namespace) -> int:
    plans = run_services(settings_of(args), lambda parts: parts.retention.list_plans(args.registry))
    output(args, [{**plan, **plan["summary"]} for plan in plans], PLANS_COLUMNS)
    return 0


def retention_show_plan(args: argparse.Namespace) -> int:
    plan = run_services(
        settings_of(args), lambda parts: parts.retention.get_plan(args.registry, args.plan)
    )
    _show_plan(args, plan)
    return 0


def retention_apply(args: argparse.Namespace) -> int:
    async def work(parts: Services) -> dict[str, Any]:
        plan = await parts.retention.apply_plan(args.registry, args.plan, ACTOR)
        target = f"/api/v1/registries/{args.registry}/retention/plans/{args.plan}:apply"
        detail = {"plan": args.plan, **(plan["result"] or {})}
        await _audit(parts, args.registry, "retention.apply", target, detail)
        return plan

    _show_plan(args, run_services(settings_of(args), work))
    return 0


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    retention = commands.add_parser(
        "retention", help="retention policies, plans (dry runs) and applying them"
    ).add_subparsers(dest="retention_command", required=True)
    for name, handler, text in (
        ("show", retention_show, "print a registry's retention policy (JSON)"),
        ("plan", retention_plan, "a dry run: make and print the plan, delete nothing"),
        ("plans", retention_plans, "list a registry's kept plans"),
    ):
        command = retention.add_parser(name, parents=[common], help=text)
        command.add_argument("registry", help="the registry")
        command.set_defaults(handler=handler)
    setter = retention.add_parser(
        "set", parents=[common], help="set a registry's retention policy from JSON"
    )
    setter.add_argument("registry", help="the registry")
    setter.add_argument("file", help="a JSON file with the policy, or - for standard input")
    setter.set_defaults(handler=retention_set)
    for name, handler, text in (
        ("show-plan", retention_show_plan, "print one plan"),
        ("apply", retention_apply, "execute exactly this plan, re-checking each item"),
    ):
        command = retention.add_parser(name, parents=[common], help=text)
        command.add_argument("registry", help="the registry")
        command.add_argument("plan", type=int, help="the plan's id")
        command.set_defaults(handler=handler)
