// What the signed-in user may do in a registry. The server's access policy (auth/policy.py,
// SPEC §2) says so in each registry it returns: `rights`, a subset of view, pull, push, delete
// and admin. The console only hides what the server would refuse anyway, and never works the
// rule out again itself.

import { api, registryPath } from "../api.js";

const NONE = { change: false, manage: false };

/** `{change, manage}` in `registry` (an API registry object): deleting images and tags, and
 * changing or deleting the registry itself. */
export function rightsIn(registry) {
  const rights = (registry && registry.rights) || [];
  return { change: rights.includes("delete"), manage: rights.includes("admin") };
}

/** The session user's rights in the registry named `name`; none when anything fails. */
export async function rightsInRegistry(session, name) {
  if (!session) return NONE;
  try {
    return rightsIn(await api.get(registryPath(name)));
  } catch {
    return NONE;
  }
}
