"""`/api/v1/registries/{reg}/retention…`: a registry's retention policy, its dry runs (stored
plans) and applying one (issue 14, point 3). Anyone who may view the registry may read the
policy and its plans; only its owners and platform admins (the ADMIN right of the access
policy) set the policy, make plans and apply them. The work is catalog/retention_plans.py's."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from ociregistry.api.common import caller, json_body, require_right, services, writer
from ociregistry.auth.policy import ADMIN, VIEW
from ociregistry.errors import NotFound
from ociregistry.ops.audit import note

POLICY_FIELDS = {"rules": list, "delete_untagged": bool, "include_immutable": bool}
MAX_PLAN_ID = 2**62


def _plan_id(request: Request) -> int:
    """The plan id of the path; anything but a plan number is a plan that does not exist."""
    raw = request.path_params["plan"]
    if not raw.isascii() or not raw.isdigit() or not 0 < int(raw) < MAX_PLAN_ID:
        raise NotFound(f"there is no retention plan {raw[:40]!r}", detail={"plan": raw[:40]})
    return int(raw)


async def get_policy(request: Request) -> JSONResponse:
    principal = await caller(request, required=False)
    registry = request.path_params["registry"]
    await require_right(request, principal, registry, VIEW)
    return JSONResponse(await services(request).retention.get_policy(registry))


async def put_policy(request: Request) -> JSONResponse:
    principal = writer(await caller(request))
    registry = request.path_params["registry"]
    await require_right(request, principal, registry, ADMIN)
    body = await json_body(request, {**POLICY_FIELDS, "schedule": (dict, type(None))})
    policy = await services(request).retention.set_policy(registry, body, principal.username)
    note(request, detail={"policy": {k: policy[k] for k in body}})
    return JSONResponse(policy)


async def make_plan(request: Request) -> JSONResponse:
    principal = writer(await caller(request))
    registry = request.path_params["registry"]
    await require_right(request, principal, registry, ADMIN)
    await json_body(request, {})  # no options: the plan follows the stored policy
    plan = await services(request).retention.make_plan(registry, principal.username)
    note(request, detail={"plan": plan["id"], **plan["summary"]})
    return JSONResponse(plan, status_code=201)


async def list_plans(request: Request) -> JSONResponse:
    principal = await caller(request, required=False)
    registry = request.path_params["registry"]
    await require_right(request, principal, registry, VIEW)
    plans = await services(request).retention.list_plans(registry)
    return JSONResponse({"items": plans, "total": len(plans)})


async def get_plan(request: Request) -> JSONResponse:
    principal = await caller(request, required=False)
    registry = request.path_params["registry"]
    await require_right(request, principal, registry, VIEW)
    return JSONResponse(await services(request).retention.get_plan(registry, _plan_id(request)))


async def apply_plan(request: Request) -> JSONResponse:
    principal = writer(await caller(request))
    registry = request.path_params["registry"]
    await require_right(request, principal, registry, ADMIN)
    plan_id = _plan_id(request)
    await json_body(request, {})
    plan = await services(request).retention.apply_plan(registry, plan_id, principal.username)
    result = plan["result"] or {}
    note(
        request,
        detail={
            "plan": plan_id,
            "tags_deleted": result.get("tags_deleted"),
            "manifests_deleted": result.get("manifests_deleted"),
            "kept_since_plan": len(result.get("kept", [])),
        },
    )
    return JSONResponse(plan)
