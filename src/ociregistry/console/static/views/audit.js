// The audit log (issue 14): who changed what, when, from where, and how it ended. Platform
// admins see every event; registry owners the events of their registries.

import { api } from "../api.js";
import { h } from "../dom.js";
import { t } from "../i18n.js";
import { fmtTime, pageHeader } from "./common.js";
import { searchBox } from "./registries.js";
import { createTable, pageQuery } from "./table.js";

const OUTCOME_BADGES = { success: "badge-ok", denied: "badge-warn", failure: "badge-danger" };

export function auditView() {
  const filters = { q: "" };
  const table = createTable({
    testid: "audit-table",
    rowKey: (e) => String(e.id),
    emptyKey: "audit.empty",
    columns: [
      { label: "col.time", class: "col-time", cell: (e) => fmtTime(e.at) },
      { label: "col.actor", cell: (e) => h("span", { class: "strong" }, e.actor || "-") },
      { label: "col.action", cell: (e) => h("code", {}, e.action) },
      {
        label: "col.target",
        cell: (e) => h("div", {}, h("div", { class: "mono small" }, `${e.method} ${e.target}`), e.detail ? h("div", { class: "muted small" }, JSON.stringify(e.detail)) : null),
      },
      { label: "col.client", cell: (e) => h("span", { class: "mono small" }, e.client) },
      {
        label: "col.outcome",
        cell: (e) => h("span", { class: ["badge", OUTCOME_BADGES[e.outcome]], dataset: { testid: "outcome" } }, t(`audit.outcome.${e.outcome}`), ` ${e.status}`),
      },
      { label: "col.requestId", cell: (e) => h("span", { class: "mono small muted" }, e.request_id || "-") },
    ],
    load: (paging) => api.get("/api/v1/audit-log", { ...pageQuery(paging), q: filters.q }),
  });
  const el = h(
    "section",
    { class: "page", dataset: { testid: "page-audit" } },
    pageHeader(t("nav.audit"), [], []),
    h("p", { class: "page-intro" }, t("audit.intro")),
    h(
      "div",
      { class: "toolbar" },
      h("div", { class: "toolbar-left" }),
      h(
        "div",
        { class: "toolbar-right" },
        searchBox("audit.search", (q) => {
          filters.q = q;
          table.reload({ resetPage: true });
        }),
      ),
    ),
    table.el,
  );
  table.reload();
  return { el };
}
