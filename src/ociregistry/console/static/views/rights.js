// What the signed-in user may do in a registry, by the same rule as the server's policy
// (SPEC §2): a group guest views, a developer also deletes images and tags, an owner also
// changes and deletes the registry, a platform admin does everything. The console uses this
// only to hide what the server would refuse anyway; the server still decides every request.

import { api, registryPath } from "../api.js";

const ROLE_RIGHTS = {
  guest: { change: false, manage: false },
  developer: { change: true, manage: false },
  owner: { change: true, manage: true },
};
const NONE = { change: false, manage: false };
const ALL = { change: true, manage: true };
const PAGE_SIZE = 100;

/** The session user's role in each of their project groups. Read afresh for every list, not
 * cached: a group the user has just created, or a role just changed, must count at once. */
export async function groupRoles() {
  const roles = new Map();
  for (let page = 1; ; page += 1) {
    const data = await api.get("/api/v1/project-groups", { page, page_size: PAGE_SIZE });
    for (const group of data.items || []) if (group.role) roles.set(group.name, group.role);
    if (page * PAGE_SIZE >= (data.total || 0)) return roles;
  }
}

/** `{change, manage}` in `registry` (an API registry object), given the user's group roles. */
export function rightsIn(session, roles, registry) {
  if (!session) return NONE;
  if (session.is_admin) return ALL;
  if (registry.kind === "platform") return NONE;
  return ROLE_RIGHTS[roles.get(registry.project_group)] || NONE;
}

/** The session user's rights in the registry named `name`; none when anything fails. */
export async function rightsInRegistry(session, name) {
  if (!session) return NONE;
  if (session.is_admin) return ALL;
  try {
    const [roles, registry] = await Promise.all([groupRoles(), api.get(registryPath(name))]);
    return rightsIn(session, roles, registry);
  } catch {
    return NONE;
  }
}
