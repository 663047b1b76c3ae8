// Users, for platform admins: create accounts, disable and enable them.

import { api } from "../api.js";
import { h } from "../dom.js";
import { t } from "../i18n.js";
import { button, field, fmtTime, pageHeader, showError, toast } from "./common.js";
import { openDialog } from "./dialog.js";
import { listToolbar } from "./registries.js";
import { createTable, pageQuery } from "./table.js";

const enc = encodeURIComponent;
const USER_SORTS = [
  ["username", "sort.nameAsc"],
  ["-created_at", "sort.createdDesc"],
];

export function usersView(ctx) {
  const filters = { q: "", sort: "username" };
  const table = createTable({
    testid: "user-table",
    rowKey: (u) => u.username,
    columns: [
      { label: "col.username", cell: (u) => h("span", { class: "strong" }, u.username) },
      {
        label: "col.admin",
        cell: (u) => h("span", { class: ["badge", u.is_admin ? "badge-public" : "badge-muted"] }, t(u.is_admin ? "users.admin" : "users.user")),
      },
      {
        label: "col.status",
        cell: (u) =>
          h(
            "div",
            { class: "status-cell" },
            h("span", { class: ["badge", u.disabled ? "badge-warn" : "badge-ok"] }, t(u.disabled ? "users.disabled" : "users.active")),
            u.blocked_until
              ? h("span", { class: "badge badge-warn", dataset: { testid: "blocked" } }, t("users.blocked", { time: fmtTime(u.blocked_until) }))
              : null,
          ),
      },
      { label: "col.created", class: "col-time", cell: (u) => fmtTime(u.created_at) },
      {
        label: "col.operations",
        class: "col-ops",
        cell: (u) =>
          h(
            "div",
            { class: "ops" },
            u.username === ctx.session.username
              ? h("span", { class: "muted" }, t("users.you"))
              : button(u.disabled ? "action.enable" : "action.disable", () => toggle(u), {
                  kind: u.disabled ? "link" : "link-danger",
                  dataset: { op: "toggle" },
                }),
            u.blocked_until ? button("action.unlock", () => unlock(u), { kind: "link", dataset: { op: "unlock" } }) : null,
          ),
      },
    ],
    load: (paging) => api.get("/api/v1/users", { ...pageQuery(paging), q: filters.q, sort: filters.sort }),
  });
  const el = h(
    "section",
    { class: "page", dataset: { testid: "page-users" } },
    pageHeader(t("nav.users"), [], [
      button("users.create", () => openCreate(), { kind: "primary", dataset: { testid: "create-user" } }),
    ]),
    h("p", { class: "page-intro" }, t("users.intro")),
    listToolbar({ searchKey: "toolbar.searchUser", sorts: USER_SORTS, filters, table }),
    table.el,
  );
  table.reload();

  async function toggle(u) {
    try {
      await api.patch(`/api/v1/users/${enc(u.username)}`, { disabled: !u.disabled });
      toast(t(u.disabled ? "users.enabledDone" : "users.disabledDone", { name: u.username }));
    } catch (error) {
      showError(error, {}, (m) => toast(m, "error"));
    }
    table.reload();
  }

  async function unlock(u) {
    try {
      await api.post(`/api/v1/users/${enc(u.username)}:unlock`, {});
      toast(t("users.unlockDone", { name: u.username }));
    } catch (error) {
      showError(error, {}, (m) => toast(m, "error"));
    }
    table.reload();
  }

  function openCreate() {
    const username = h("input", { type: "text", maxlength: "64", autocomplete: "off", dataset: { testid: "new-username" } });
    const password = h("input", { type: "password", autocomplete: "new-password", dataset: { testid: "new-password" } });
    const admin = h("input", { type: "checkbox", dataset: { testid: "new-admin" } });
    const fields = {
      username: field("form.username", username, { required: true, hint: t("users.usernameHint") }),
      password: field("form.password", password, { required: true, hint: t("users.passwordHint") }),
      is_admin: field("col.admin", h("label", { class: "check-row" }, admin, h("span", {}, t("users.makeAdmin")))),
    };
    openDialog({
      title: t("users.create"),
      testid: "user-dialog",
      confirmKey: "action.create",
      body: h("div", { class: "form" }, Object.values(fields).map((f) => f.el)),
      onConfirm: async (dlg) => {
        try {
          await api.post("/api/v1/users", {
            username: username.value.trim(),
            password: password.value,
            is_admin: admin.checked,
          });
        } catch (error) {
          showError(error, fields, dlg.setError, (e) =>
            (e.detail && e.detail.field) || (e.code === "ALREADY_EXISTS" ? "username" : null),
          );
          return false;
        }
        toast(t("users.created", { name: username.value.trim() }));
        table.reload();
        return true;
      },
    });
  }

  return { el, refresh: () => table.refresh() };
}
