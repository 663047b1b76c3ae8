// The console: a layout (top bar, side navigation), a hash router over the screens, the
// language switch, and a poll that keeps the current list's counts and statuses current.

import { fetchSession, setCsrfToken, signOut, whenSignedOut } from "./api.js";
import { h, replace } from "./dom.js";
import { getLang, otherLang, setLang, t } from "./i18n.js";
import { describeError } from "./views/common.js";
import { auditView } from "./views/audit.js";
import { groupsView, membersView } from "./views/groups.js";
import { imagesView, tagsView } from "./views/images.js";
import { registriesView, sharedView } from "./views/registries.js";
import { retentionView } from "./views/retention.js";
import { signinView } from "./views/signin.js";
import { tokensView } from "./views/tokens.js";
import { usersView } from "./views/users.js";

const POLL_MS = 3000;

const state = { session: null, view: null, next: null, polling: false };

const NAV = [
  { key: "nav.registries", href: "#/registries", icon: "registry", auth: true },
  { key: "nav.platform", href: "#/platform", icon: "platform" },
  { key: "nav.shared", href: "#/shared", icon: "shared" },
  { key: "nav.groups", href: "#/groups", icon: "group", auth: true },
  { key: "nav.tokens", href: "#/tokens", icon: "token", auth: true },
  { key: "nav.users", href: "#/users", icon: "user", admin: true },
  { key: "nav.audit", href: "#/audit", icon: "audit", auth: true },
];

/** `#/registries/a/images/b%2Fc/tags` → a screen, its parameters and what it needs. */
function resolve(segments) {
  const [root, reg, sub, image, leaf] = segments;
  const n = segments.length;
  const match = (...shape) => n === shape.length && shape.every((part, i) => part === null || part === segments[i]);
  if (root === "registries") {
    if (n === 1) return { nav: "#/registries", auth: true, make: (ctx) => registriesView(ctx) };
    if (match("registries", null, "images"))
      return { nav: "#/registries", auth: true, make: (ctx) => imagesView(ctx, { mode: "user", registry: reg }) };
    if (match("registries", null, "retention"))
      return { nav: "#/registries", auth: true, make: (ctx) => retentionView(ctx, { registry: reg }) };
    if (match("registries", null, "images", null, "tags"))
      return { nav: "#/registries", auth: true, make: (ctx) => tagsView(ctx, { mode: "user", registry: reg, image }) };
  }
  if (root === "shared") {
    if (n === 1) return { nav: "#/shared", make: (ctx) => sharedView(ctx) };
    if (match("shared", null, "images"))
      return { nav: "#/shared", make: (ctx) => imagesView(ctx, { mode: "shared", registry: reg }) };
    if (match("shared", null, "images", null, "tags"))
      return { nav: "#/shared", make: (ctx) => tagsView(ctx, { mode: "shared", registry: reg, image }) };
  }
  if (root === "platform") {
    if (n === 1) return { nav: "#/platform", make: (ctx) => imagesView(ctx, { mode: "platform" }) };
    if (match("platform", null, "images", null, "tags"))
      return { nav: "#/platform", make: (ctx) => tagsView(ctx, { mode: "platform", registry: reg, image }) };
  }
  if (root === "groups") {
    if (n === 1) return { nav: "#/groups", auth: true, make: (ctx) => groupsView(ctx) };
    if (n === 2) return { nav: "#/groups", auth: true, make: (ctx) => membersView(ctx, { group: reg }) };
  }
  if (root === "audit" && n === 1) return { nav: "#/audit", auth: true, make: (ctx) => auditView(ctx) };
  if (root === "tokens" && n === 1) return { nav: "#/tokens", auth: true, make: (ctx) => tokensView(ctx) };
  if (root === "users" && n === 1) return { nav: "#/users", auth: true, admin: true, make: (ctx) => usersView(ctx) };
  if (root === "signin" && n === 1) return { nav: null, bare: true, make: (ctx) => signinView(ctx) };
  void sub;
  void leaf;
  return null;
}

function segmentsOf(hash) {
  const path = hash.replace(/^#\/?/, "").split("?")[0];
  return path
    .split("/")
    .filter(Boolean)
    .map((part) => {
      try {
        return decodeURIComponent(part);
      } catch {
        return part;
      }
    });
}

function navigate(hash) {
  if (window.location.hash === hash) render();
  else window.location.hash = hash;
}

const ctx = {
  get session() {
    return state.session;
  },
  navigate,
  signedIn(session) {
    state.session = session;
    setCsrfToken(session.csrf_token);
    const next = state.next && !state.next.startsWith("#/signin") ? state.next : "#/registries";
    state.next = null;
    navigate(next);
  },
};

function langSwitch() {
  const other = otherLang();
  return h(
    "button",
    {
      type: "button",
      class: "lang-switch",
      lang: other,
      title: t("lang.switchTitle"),
      dataset: { testid: "lang-switch" },
      onclick: () => {
        setLang(other);
        const toasts = document.getElementById("toasts");
        if (toasts) replace(toasts);
        render();
      },
    },
    h("span", { class: "icon icon-globe", "aria-hidden": "true" }),
    t("lang.other"),
  );
}

function topbar() {
  const user = state.session
    ? h(
        "div",
        { class: "user-box" },
        h("span", { class: "user-name", dataset: { testid: "current-user" } }, state.session.username),
        state.session.is_admin ? h("span", { class: "badge badge-public" }, t("users.admin")) : null,
        h(
          "button",
          {
            type: "button",
            class: "btn btn-ghost",
            dataset: { testid: "sign-out" },
            onclick: async () => {
              try {
                await signOut();
              } catch {
                // signed out locally all the same
              }
              state.session = null;
              navigate("#/signin");
            },
          },
          t("auth.signOut"),
        ),
      )
    : h("a", { class: "btn btn-ghost", href: "#/signin", dataset: { testid: "sign-in-link" } }, t("auth.signIn"));
  return h(
    "header",
    { class: "topbar" },
    h("a", { class: "brand", href: "#/" }, h("span", { class: "brand-logo", "aria-hidden": "true" }), h("span", {}, t("app.name"))),
    h("div", { class: "topbar-right" }, langSwitch(), user),
  );
}

function sidebar(current) {
  const items = NAV.filter((item) => (!item.auth || state.session) && (!item.admin || (state.session && state.session.is_admin)));
  return h(
    "nav",
    { class: "sidebar", "aria-label": t("nav.main") },
    h("div", { class: "sidebar-title" }, t("app.section")),
    h(
      "ul",
      {},
      items.map((item) =>
        h(
          "li",
          {},
          h(
            "a",
            {
              href: item.href,
              class: ["nav-link", item.href === current ? "active" : null],
              "aria-current": item.href === current ? "page" : undefined,
              title: t(item.key), // the name, when a narrow window shows the icon only
              dataset: { nav: item.href.slice(2) },
            },
            h("span", { class: ["icon", `icon-${item.icon}`], "aria-hidden": "true" }),
            t(item.key),
          ),
        ),
      ),
    ),
  );
}

function render() {
  const root = document.getElementById("app");
  document.documentElement.lang = getLang();
  const segments = segmentsOf(window.location.hash);
  if (!segments.length) {
    window.location.replace(state.session ? "#/registries" : "#/shared");
    return;
  }
  const route = resolve(segments);
  if (route && route.auth && !state.session) {
    state.next = window.location.hash;
    window.location.replace("#/signin");
    return;
  }
  if (route && route.bare && state.session) {
    window.location.replace("#/registries");
    return;
  }
  let view;
  if (!route || (route.admin && !(state.session && state.session.is_admin))) {
    view = {
      el: h(
        "section",
        { class: "page" },
        h("div", { class: "notice" }, t("error.pageNotFound"), " ", h("a", { href: "#/" }, t("tags.back"))),
      ),
    };
  } else {
    try {
      view = route.make(ctx);
    } catch (error) {
      view = { el: h("div", { class: "notice notice-error" }, describeError(error)) };
    }
  }
  state.view = view;
  const main = h("main", { class: "main", id: "main" }, view.el);
  if (route && route.bare) {
    replace(root, h("div", { class: "bare" }, h("div", { class: "bare-top" }, langSwitch()), view.el));
  } else {
    replace(root, topbar(), h("div", { class: "shell" }, sidebar(route ? route.nav : null), main));
  }
  document.title = `${t("app.name")} · ${t(route && route.nav ? NAV.find((n) => n.href === route.nav).key : "auth.signIn")}`;
}

async function poll() {
  if (state.polling || document.hidden || !state.view || !state.view.refresh) return;
  state.polling = true;
  try {
    await state.view.refresh();
  } catch {
    // the next poll tries again
  } finally {
    state.polling = false;
  }
}

async function start() {
  whenSignedOut(() => {
    if (!state.session) return;
    state.session = null;
    state.next = window.location.hash;
    navigate("#/signin");
  });
  try {
    state.session = await fetchSession();
  } catch {
    state.session = null;
  }
  if (state.session) setCsrfToken(state.session.csrf_token);
  window.addEventListener("hashchange", render);
  render();
  setInterval(poll, POLL_MS);
  document.body.dataset.ready = "true";
}

start();
