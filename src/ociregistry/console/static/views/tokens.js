// Personal access tokens: use them as passwords for `docker login` (for CI). A new token's
// secret is shown once; revoking one takes effect at once.

import { api } from "../api.js";
import { h } from "../dom.js";
import { t } from "../i18n.js";
import { button, commandCell, copyButton, field, fmtTime, pageHeader, showError, toast } from "./common.js";
import { openDialog } from "./dialog.js";
import { createTable, pageQuery } from "./table.js";

function tokenStatus(token) {
  if (token.revoked_at) return ["tokens.status.revoked", "badge-muted"];
  if (token.expires_at && new Date(token.expires_at) < new Date()) return ["tokens.status.expired", "badge-warn"];
  return ["tokens.status.active", "badge-ok"];
}

export function tokensView(ctx) {
  const table = createTable({
    testid: "token-table",
    rowKey: (tok) => tok.id,
    emptyKey: "tokens.empty",
    columns: [
      { label: "col.name", cell: (tok) => h("span", { class: "strong" }, tok.name) },
      { label: "col.tokenId", cell: (tok) => h("span", { class: "mono small" }, tok.id) },
      { label: "col.access", cell: (tok) => t(tok.read_only ? "tokens.readOnly" : "tokens.readWrite") },
      {
        label: "col.status",
        cell: (tok) => {
          const [key, kind] = tokenStatus(tok);
          return h("span", { class: ["badge", kind] }, t(key));
        },
      },
      { label: "col.created", class: "col-time", cell: (tok) => fmtTime(tok.created_at) },
      { label: "col.expires", class: "col-time", cell: (tok) => (tok.expires_at ? fmtTime(tok.expires_at) : t("tokens.never")) },
      { label: "col.lastUsed", class: "col-time", cell: (tok) => fmtTime(tok.last_used_at) },
      {
        label: "col.operations",
        class: "col-ops",
        cell: (tok) =>
          tok.revoked_at
            ? h("span", { class: "muted" }, "-")
            : button("action.revoke", () => openRevoke(tok), { kind: "link-danger", dataset: { op: "revoke" } }),
      },
    ],
    load: (paging) => api.get("/api/v1/users/me/tokens", { ...pageQuery(paging), sort: "-created_at" }),
  });

  const el = h(
    "section",
    { class: "page", dataset: { testid: "page-tokens" } },
    pageHeader(t("nav.tokens"), [], [
      button("tokens.create", () => openCreate(), { kind: "primary", dataset: { testid: "create-token" } }),
    ]),
    h("p", { class: "page-intro" }, t("tokens.intro")),
    table.el,
  );
  table.reload();

  function openCreate() {
    const name = h("input", { type: "text", maxlength: "100", dataset: { testid: "token-name" } });
    const readOnly = h("input", { type: "checkbox", dataset: { testid: "token-read-only" } });
    const expires = h("input", { type: "date", dataset: { testid: "token-expires" } });
    const fields = {
      name: field("form.tokenName", name, { required: true }),
      read_only: field("form.access", h("label", { class: "check-row" }, readOnly, h("span", {}, t("tokens.readOnlyHint")))),
      expires_at: field("form.expires", expires, { hint: t("tokens.expiresHint") }),
    };
    openDialog({
      title: t("tokens.create"),
      testid: "token-dialog",
      confirmKey: "action.create",
      body: h("div", { class: "form" }, Object.values(fields).map((f) => f.el)),
      onConfirm: async (dlg) => {
        if (!name.value.trim()) {
          fields.name.setError(t("validate.required"));
          return false;
        }
        const body = { name: name.value.trim(), read_only: readOnly.checked };
        if (expires.value) body.expires_at = new Date(`${expires.value}T23:59:59`).toISOString();
        let created;
        try {
          ({ data: created } = await api.post("/api/v1/users/me/tokens", body));
        } catch (error) {
          showError(error, fields, dlg.setError);
          return false;
        }
        table.reload();
        showSecret(created);
        return true;
      },
    });
  }

  function showSecret(created) {
    const host = window.location.host;
    const login = `docker login ${host} -u ${ctx.session.username} --password-stdin`;
    openDialog({
      title: t("tokens.created.title"),
      testid: "token-secret-dialog",
      wide: true,
      body: h(
        "div",
        { class: "confirm-body" },
        h("p", { class: "warning" }, t("tokens.created.once")),
        h("div", { class: "secret" }, h("code", { dataset: { testid: "token-secret" } }, created.token), copyButton(created.token)),
        h("p", { class: "muted small" }, t("tokens.created.usage")),
        commandCell(login),
      ),
    });
  }

  function openRevoke(tok) {
    openDialog({
      title: t("tokens.revoke.title"),
      testid: "revoke-dialog",
      confirmKey: "action.revoke",
      confirmKind: "danger",
      body: h("p", { class: "confirm-question" }, t("tokens.revoke.question", { name: tok.name })),
      onConfirm: async () => {
        await api.del(`/api/v1/users/me/tokens/${encodeURIComponent(tok.id)}`);
        toast(t("tokens.revoke.done", { name: tok.name }));
        table.reload();
        return true;
      },
    });
  }

  return { el };
}
