// The console's only way to the server: /api/v1 and /console/session, over fetch with the
// session cookie. Every change carries the session's CSRF token as X-CSRF-Token.

export class ApiError extends Error {
  constructor(status, code, message, detail) {
    super(message || code);
    this.status = status;
    this.code = code;
    this.detail = detail || {};
  }
}

let csrfToken = null;
let onSignedOut = () => {};

export function setCsrfToken(token) {
  csrfToken = token;
}

/** Called when a request that needed a session answers 401 (the session ran out). */
export function whenSignedOut(callback) {
  onSignedOut = callback;
}

const enc = encodeURIComponent;

export function registryPath(name) {
  return `/api/v1/registries/${enc(name)}`;
}

export function imagePath(registry, image) {
  return `${registryPath(registry)}/images/${image.split("/").map(enc).join("/")}`;
}

export function tagPath(registry, image, tag) {
  return `${imagePath(registry, image)}/-/tags/${enc(tag)}`;
}

function withQuery(path, query) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

export async function request(method, path, { body, query, quiet } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  let response;
  try {
    response = await fetch(withQuery(path, query), {
      method,
      headers,
      credentials: "same-origin",
      cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, "NETWORK", String(error && error.message ? error.message : error));
  }
  let data = null;
  const text = await response.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const err = (data && data.error) || {};
    const error = new ApiError(
      response.status,
      err.code || `HTTP_${response.status}`,
      err.message || response.statusText,
      err.detail,
    );
    if (response.status === 401 && !quiet) onSignedOut(error);
    throw error;
  }
  return { status: response.status, data };
}

export const api = {
  get: (path, query, options) => request("GET", path, { query, ...options }).then((r) => r.data),
  post: (path, body) => request("POST", path, { body }),
  patch: (path, body) => request("PATCH", path, { body }),
  put: (path, body) => request("PUT", path, { body }),
  del: (path, query) => request("DELETE", path, { query }),
};

export async function fetchSession() {
  try {
    return await api.get("/console/session", undefined, { quiet: true });
  } catch (error) {
    if (error.status === 401) return null;
    throw error;
  }
}

export async function signIn(username, password) {
  const { data } = await request("POST", "/console/session", {
    body: { username, password },
    quiet: true,
  });
  return data;
}

export async function signOut() {
  try {
    await request("DELETE", "/console/session", { quiet: true });
  } finally {
    csrfToken = null;
  }
}
