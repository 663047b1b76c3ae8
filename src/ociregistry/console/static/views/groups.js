// Project groups: every registry belongs to one, and membership (owner, developer, guest)
// grants access to its registries. Owners manage the members.

import { api } from "../api.js";
import { h } from "../dom.js";
import { t } from "../i18n.js";
import { button, field, fmtCount, fmtTime, link, pageHeader, showError, toast } from "./common.js";
import { openDialog } from "./dialog.js";
import { createTable, pageQuery } from "./table.js";

const ROLES = ["owner", "developer", "guest"];
const enc = encodeURIComponent;

function roleText(role) {
  return role ? t(`role.${role}`) : "-";
}

export function groupsView() {
  const table = createTable({
    testid: "group-table",
    rowKey: (g) => g.name,
    columns: [
      {
        label: "col.nameId",
        class: "col-name",
        cell: (g) =>
          h(
            "div",
            { class: "name-cell" },
            link(`#/groups/${enc(g.name)}`, g.name, { class: "strong" }),
            h("div", { class: "mono muted small" }, g.id),
          ),
      },
      { label: "col.description", cell: (g) => g.description || "-" },
      { label: "col.myRole", cell: (g) => roleText(g.role) },
      { label: "col.members", class: "num", cell: (g) => fmtCount(g.member_count) },
      { label: "col.created", class: "col-time", cell: (g) => fmtTime(g.created_at) },
      {
        label: "col.operations",
        class: "col-ops",
        cell: (g) => link(`#/groups/${enc(g.name)}`, t("groups.members"), { class: "btn btn-link", dataset: { op: "members" } }),
      },
    ],
    load: (paging) => api.get("/api/v1/project-groups", pageQuery(paging)),
  });
  const el = h(
    "section",
    { class: "page", dataset: { testid: "page-groups" } },
    pageHeader(t("nav.groups"), [], [
      button("groups.create", () => openCreate(), { kind: "primary", dataset: { testid: "create-group" } }),
    ]),
    h("p", { class: "page-intro" }, t("groups.intro")),
    table.el,
  );
  table.reload();

  function openCreate() {
    const name = h("input", { type: "text", maxlength: "64", dataset: { testid: "group-name" } });
    const description = h("input", { type: "text", maxlength: "256", dataset: { testid: "group-description" } });
    const fields = {
      name: field("form.name", name, { required: true, hint: t("groups.nameHint") }),
      description: field("form.description", description),
    };
    openDialog({
      title: t("groups.create"),
      testid: "group-dialog",
      confirmKey: "action.create",
      body: h("div", { class: "form" }, Object.values(fields).map((f) => f.el)),
      onConfirm: async (dlg) => {
        try {
          await api.post("/api/v1/project-groups", { name: name.value.trim(), description: description.value });
        } catch (error) {
          showError(error, fields, dlg.setError, (e) =>
            (e.detail && e.detail.field) || (e.code === "ALREADY_EXISTS" ? "name" : null),
          );
          return false;
        }
        toast(t("groups.created", { name: name.value.trim() }));
        table.reload();
        return true;
      },
    });
  }

  return { el, refresh: () => table.refresh() };
}

export function membersView(ctx, { group }) {
  let manage = ctx.session.is_admin;
  const table = createTable({
    testid: "member-table",
    rowKey: (m) => m.username,
    columns: [
      { label: "col.username", cell: (m) => h("span", { class: "strong" }, m.username) },
      {
        label: "col.role",
        cell: (m) =>
          manage
            ? h(
                "select",
                {
                  "aria-label": t("col.role"),
                  dataset: { testid: "role" },
                  onchange: (event) => setRole(m.username, event.target.value),
                },
                ROLES.map((role) => h("option", { value: role, selected: role === m.role }, t(`role.${role}`))),
              )
            : roleText(m.role),
      },
      {
        label: "col.operations",
        class: "col-ops",
        cell: (m) =>
          manage
            ? button("action.remove", () => openRemove(m), { kind: "link-danger", dataset: { op: "remove" } })
            : h("span", { class: "muted" }, "-"),
      },
    ],
    load: (paging) => api.get(`/api/v1/project-groups/${enc(group)}/members`, pageQuery(paging)),
  });

  const username = h("input", { type: "text", placeholder: t("form.username"), "aria-label": t("form.username"), dataset: { testid: "member-username" } });
  const role = h(
    "select",
    { "aria-label": t("col.role"), dataset: { testid: "member-role" } },
    ROLES.map((r) => h("option", { value: r, selected: r === "developer" }, t(`role.${r}`))),
  );
  const addFields = { username: field("form.username", username) };
  const addForm = h(
    "form",
    { class: "inline-form", noValidate: true, hidden: true, dataset: { testid: "add-member" } },
    h("span", { class: "strong" }, t("groups.addMember")),
    addFields.username.el,
    role,
    h("button", { type: "submit", class: "btn btn-primary" }, t("action.add")),
  );
  addForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = username.value.trim();
    if (!name) {
      addFields.username.setError(t("validate.required"));
      return;
    }
    try {
      await api.put(`/api/v1/project-groups/${enc(group)}/members/${enc(name)}`, { role: role.value });
    } catch (error) {
      showError(error, addFields, (m) => addFields.username.setError(m), (e) =>
        e.code === "NOT_FOUND" || e.code === "INVALID_ARGUMENT" ? "username" : null,
      );
      return;
    }
    addFields.username.setError("");
    username.value = "";
    toast(t("groups.memberAdded", { name }));
    table.reload();
  });

  async function setRole(name, value) {
    try {
      await api.put(`/api/v1/project-groups/${enc(group)}/members/${enc(name)}`, { role: value });
      toast(t("groups.roleChanged", { name, role: t(`role.${value}`) }));
    } catch (error) {
      showError(error, {}, (m) => toast(m, "error"));
    }
    table.reload();
  }

  function openRemove(m) {
    openDialog({
      title: t("groups.remove.title"),
      testid: "remove-dialog",
      confirmKey: "action.remove",
      confirmKind: "danger",
      body: h("p", { class: "confirm-question" }, t("groups.remove.question", { name: m.username, group })),
      onConfirm: async () => {
        await api.del(`/api/v1/project-groups/${enc(group)}/members/${enc(m.username)}`);
        toast(t("groups.remove.done", { name: m.username }));
        table.reload();
        return true;
      },
    });
  }

  const el = h(
    "section",
    { class: "page", dataset: { testid: "page-members" } },
    pageHeader(t("groups.membersOf", { name: group }), [
      [t("nav.groups"), "#/groups"],
      [group, null],
    ]),
    h("p", { class: "page-intro" }, t("groups.rolesIntro")),
    addForm,
    table.el,
  );
  api
    .get("/api/v1/project-groups", { q: group, page_size: 100 })
    .then((data) => {
      const mine = (data.items || []).find((g) => g.name === group);
      if (mine && mine.role === "owner") manage = true;
    })
    .catch(() => {})
    .finally(() => {
      addForm.hidden = !manage;
      table.reload();
    });
  return { el };
}
