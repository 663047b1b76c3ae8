// Pieces every screen uses: times, badges, copy buttons, toasts, form fields, page headers and
// turning API errors into messages in the user's language.

import { h, replace } from "../dom.js";
import { has, t } from "../i18n.js";

const pad = (n) => String(n).padStart(2, "0");

/** An RFC 3339 time in the browser's time zone, `2024-05-01 12:34:56`. */
export function fmtTime(iso) {
  if (!iso) return "-";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "-";
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

/** `2024-05-01 12:34`, for tight columns; the full time goes in a title. */
export function fmtMinute(iso) {
  const full = fmtTime(iso);
  return full === "-" ? full : full.slice(0, 16);
}

/** A shorter form, `05-01 12:34`, for small print; the full time goes in a title. */
export function fmtShortTime(iso) {
  if (!iso) return "-";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "-";
  return `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function fmtCount(n) {
  return typeof n === "number" ? n.toLocaleString("en-US") : "-";
}

export function fmtSize(bytes) {
  if (typeof bytes !== "number") return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

/** A registry's storage: what it uses, the part only it references, and against its quota a
 * bar (a <meter>: the browser colours it amber from 80 %, red from 95 %; no inline style). */
export function usageCell(r) {
  const quota = r.quota_bytes || 0;
  const share = quota ? Math.min(1, r.size_bytes / quota) : 0;
  return h(
    "div",
    { class: "usage", dataset: { testid: "usage" } },
    h("div", { class: "count" }, quota ? t("usage.ofQuota", { used: fmtSize(r.size_bytes), quota: fmtSize(quota) }) : fmtSize(r.size_bytes)),
    quota
      ? h("meter", {
          class: "quota-bar",
          min: "0",
          max: String(quota),
          low: String(Math.floor(quota * 0.8)),
          high: String(Math.floor(quota * 0.95)),
          optimum: "0",
          value: Math.min(r.size_bytes, quota),
          title: `${Math.round(share * 100)} %`,
          dataset: { testid: "quota-bar" },
        })
      : null,
    h("div", { class: "muted small", title: t("usage.uniqueHint") }, t("usage.unique", { size: fmtSize(r.unique_bytes) })),
  );
}

export function shortDigest(digest) {
  if (!digest) return "-";
  const [algo, hex] = digest.split(":");
  return hex ? `${algo}:${hex.slice(0, 12)}` : digest;
}

// --- toasts -----------------------------------------------------------------------------------

const MAX_TOASTS = 3;

export function toast(message, kind = "success") {
  const box = document.getElementById("toasts");
  if (!box) return;
  const item = h("div", { class: ["toast", `toast-${kind}`], role: "status" }, message);
  box.append(item);
  while (box.children.length > MAX_TOASTS) box.firstElementChild.remove();
  setTimeout(() => item.classList.add("toast-leaving"), 2600);
  setTimeout(() => item.remove(), 3000);
}

// --- copying ----------------------------------------------------------------------------------

export async function copyText(text) {
  let done = false;
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      done = true;
    }
  } catch {
    done = false;
  }
  if (!done) {
    const area = h("textarea", { class: "offscreen", readonly: "" });
    area.value = text;
    document.body.append(area);
    area.select();
    try {
      done = document.execCommand("copy");
    } catch {
      done = false;
    }
    area.remove();
  }
  toast(done ? t("toast.copied") : t("toast.copyFailed"), done ? "success" : "error");
}

export function copyButton(text, labelKey = "action.copy") {
  return h(
    "button",
    {
      type: "button",
      class: "btn-icon copy",
      title: t(labelKey),
      "aria-label": t(labelKey),
      dataset: { copy: text },
      onclick: (event) => {
        event.stopPropagation();
        copyText(text);
      },
    },
    h("span", { class: "icon icon-copy", "aria-hidden": "true" }),
  );
}

/** A command in monospace with a copy button beside it. */
export function commandCell(command) {
  if (!command) return "-";
  return h("div", { class: "command" }, h("code", { title: command }, command), copyButton(command));
}

// --- small displays ---------------------------------------------------------------------------

export function statusBadge(status) {
  const key = `status.${status}`;
  return h(
    "span",
    { class: ["badge", status === "available" ? "badge-ok" : "badge-warn"] },
    has(key) ? t(key) : status,
  );
}

export function visibilityBadge(isPublic) {
  return h(
    "span",
    { class: ["badge", isPublic ? "badge-public" : "badge-private"] },
    t(isPublic ? "visibility.public" : "visibility.private"),
  );
}

export function labelChips(labels) {
  const entries = Object.entries(labels || {});
  if (!entries.length) return h("span", { class: "muted" }, "-");
  return h(
    "div",
    { class: "chips" },
    entries.map(([key, value]) =>
      h("span", { class: "chip", title: `${key}: ${value}` }, `${key}: ${value}`),
    ),
  );
}

export function link(href, text, props = {}) {
  return h("a", { href, ...props }, text);
}

export function button(labelKey, onclick, { kind = "default", disabled = false, ...rest } = {}) {
  return h(
    "button",
    { type: "button", class: ["btn", `btn-${kind}`], onclick, disabled, ...rest },
    t(labelKey),
  );
}

// --- page layout ------------------------------------------------------------------------------

/** Title, breadcrumbs (`[[text, href], …]`) and optional actions on the right. */
export function pageHeader(title, crumbs = [], actions = []) {
  const trail = crumbs.length
    ? h(
        "nav",
        { class: "crumbs", "aria-label": t("nav.breadcrumbs") },
        crumbs.map(([text, href], i) => [
          i ? h("span", { class: "crumb-sep", "aria-hidden": "true" }, "/") : null,
          href ? h("a", { href }, text) : h("span", { class: "crumb-current" }, text),
        ]),
      )
    : null;
  return h(
    "div",
    { class: "page-header" },
    trail,
    h("div", { class: "page-title-row" }, h("h1", {}, title), h("div", { class: "actions" }, actions)),
  );
}

/** A definition list of `[labelKey, value, wide?]` entries. */
export function summary(pairs) {
  return h(
    "dl",
    { class: "summary" },
    pairs.map(([key, value, wide]) =>
      h("div", { class: ["summary-item", wide ? "summary-wide" : null] }, h("dt", {}, t(key)), h("dd", {}, value)),
    ),
  );
}

// --- forms ------------------------------------------------------------------------------------

/** A labelled form control with a hint and a place for its error. */
export function field(labelKey, control, { hint, required = false, id } = {}) {
  const controlId = id || `f-${Math.random().toString(36).slice(2, 9)}`;
  if (control instanceof HTMLElement && !control.id && control.matches("input,select,textarea")) {
    control.id = controlId;
  }
  const error = h("div", { class: "field-error", role: "alert" });
  const el = h(
    "div",
    { class: "field" },
    h(
      "label",
      { class: "field-label", for: control.id || undefined },
      t(labelKey),
      required ? h("span", { class: "required", "aria-hidden": "true" }, "*") : null,
    ),
    h("div", { class: "field-control" }, control, hint ? h("div", { class: "field-hint" }, hint) : null, error),
  );
  return {
    el,
    control,
    setError(message) {
      replace(error, message || "");
      el.classList.toggle("has-error", Boolean(message));
    },
  };
}

// --- errors -----------------------------------------------------------------------------------

/** The field of a form that an API error is about, if it names one. */
export function errorField(error) {
  const detail = (error && error.detail) || {};
  if (typeof detail.field === "string") return detail.field;
  return null;
}

/** An API error in the user's language: `error.CODE.field`, then `error.CODE`, then the
 * server's own message. */
export function describeError(error, fieldOf = errorField) {
  if (!error) return t("error.unknown");
  const field = fieldOf(error);
  const vars = { ...(error.detail || {}), message: error.message || "" };
  if (field && has(`error.${error.code}.${field}`)) return t(`error.${error.code}.${field}`, vars);
  if (has(`error.${error.code}`)) return t(`error.${error.code}`, vars);
  return error.message || t("error.unknown");
}

/** Put an API error next to the form field it names (in `fields`), else into `fallback`. */
export function showError(error, fields, fallback, fieldOf = errorField) {
  for (const entry of Object.values(fields || {})) entry.setError("");
  const target = fieldOf(error);
  const message = describeError(error, fieldOf);
  if (target && fields && fields[target]) fields[target].setError(message);
  else fallback(message);
}

// --- names (SPEC §1) --------------------------------------------------------------------------

const REGISTRY_CHARS = /^[a-z0-9._-]*$/;
const ALNUM = /^[a-z0-9]$/;

/** The catalogue key of what is wrong with a registry name, or null when it is valid. */
export function registryNameProblem(name) {
  if (!name) return "validate.name.required";
  if (!REGISTRY_CHARS.test(name)) return "validate.name.chars";
  if (name.length < 2) return "validate.name.short";
  if (name.length > 63) return "validate.name.long";
  if (!ALNUM.test(name[0]) || !ALNUM.test(name[name.length - 1])) return "validate.name.edges";
  return null;
}
