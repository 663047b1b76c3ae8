"""The management API under /api/v1 (SPEC §5). One module per resource; handlers are thin
and call into catalog/ and auth/."""

from starlette.routing import Route

from ociregistry.api import (
    audit,
    groups,
    images,
    openapi,
    registries,
    retention,
    usage,
    users,
    views,
)

REG = "/api/v1/registries/{registry}"
IMAGE = REG + "/images/{image:path}"

routes = [
    Route("/api/v1/openapi.json", openapi.document, methods=["GET"]),
    Route("/api/v1/registries", registries.list_registries, methods=["GET"]),
    Route("/api/v1/registries", registries.create_registry, methods=["POST"]),
    Route("/api/v1/registries:batchDelete", registries.batch_delete_registries, methods=["POST"]),
    Route(REG, registries.get_registry, methods=["GET"]),
    Route(REG, registries.update_registry, methods=["PATCH"]),
    Route(REG, registries.delete_registry, methods=["DELETE"]),
    Route(REG + "/labels", registries.replace_labels, methods=["PUT"]),
    Route(REG + "/retention", retention.get_policy, methods=["GET"]),
    Route(REG + "/retention", retention.put_policy, methods=["PUT"]),
    Route(REG + "/retention/plans", retention.list_plans, methods=["GET"]),
    Route(REG + "/retention/plans", retention.make_plan, methods=["POST"]),
    Route(REG + "/retention/plans/{plan}:apply", retention.apply_plan, methods=["POST"]),
    Route(REG + "/retention/plans/{plan}", retention.get_plan, methods=["GET"]),
    Route(REG + "/images", images.list_images, methods=["GET"]),
    Route(REG + "/images:batchDelete", images.batch_delete_images, methods=["POST"]),
    # Tag routes first: an image path never holds a `-` component, so `/-/` ends it.
    Route(IMAGE + "/-/tags", images.list_tags, methods=["GET"]),
    Route(IMAGE + "/-/tags:batchDelete", images.batch_delete_tags, methods=["POST"]),
    Route(IMAGE + "/-/tags/{tag}", images.delete_tag, methods=["DELETE"]),
    Route(IMAGE, images.get_image, methods=["GET"]),
    Route(IMAGE, images.delete_image, methods=["DELETE"]),
    Route("/api/v1/shared/registries", views.shared_registries, methods=["GET"]),
    Route("/api/v1/platform/registries", views.platform_registries, methods=["GET"]),
    Route("/api/v1/platform/images", views.platform_images, methods=["GET"]),
    Route("/api/v1/platform/usage", usage.platform_usage, methods=["GET"]),
    Route("/api/v1/audit-log", audit.list_events, methods=["GET"]),
    Route("/api/v1/project-groups", groups.list_groups, methods=["GET"]),
    Route("/api/v1/project-groups", groups.create_group, methods=["POST"]),
    Route("/api/v1/project-groups/{group}/members", groups.list_members, methods=["GET"]),
    Route("/api/v1/project-groups/{group}/members/{username}", groups.set_member, methods=["PUT"]),
    Route(
        "/api/v1/project-groups/{group}/members/{username}",
        groups.remove_member,
        methods=["DELETE"],
    ),
    Route("/api/v1/users", users.list_users, methods=["GET"]),
    Route("/api/v1/users", users.create_user, methods=["POST"]),
    Route("/api/v1/users/{username}:unlock", users.unlock_user, methods=["POST"]),
    Route("/api/v1/users/{username}", users.get_user, methods=["GET"]),
    Route("/api/v1/users/{username}", users.update_user, methods=["PATCH"]),
    Route("/api/v1/users/{username}/tokens", users.list_tokens, methods=["GET"]),
    Route("/api/v1/users/{username}/tokens", users.create_token, methods=["POST"]),
    Route("/api/v1/users/{username}/tokens/{token_id}", users.revoke_token, methods=["DELETE"]),
]
