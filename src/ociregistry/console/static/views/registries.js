// User registries (guide 37.2): the list with search, filters, sorting, paging and batch
// delete; the create, modify, modify-labels and delete dialogs. The shared registries view
// (guide 37.4) is the same list, read-only, over every public user registry.

import { api, registryPath } from "../api.js";
import { h, replace } from "../dom.js";
import { t } from "../i18n.js";
import {
  button,
  describeError,
  field,
  fmtCount,
  fmtMinute,
  fmtShortTime,
  fmtTime,
  labelChips,
  link,
  pageHeader,
  registryNameProblem,
  showError,
  statusBadge,
  toast,
  usageCell,
  visibilityBadge,
} from "./common.js";
import { openDialog } from "./dialog.js";
import { labelEditor } from "./labels.js";
import { rightsIn } from "./rights.js";
import { createTable, pageQuery } from "./table.js";

const DELETE_POLL_MS = 700;
const DELETE_WAIT_MS = 120000;

const REGISTRY_SORTS = [
  ["name", "sort.nameAsc"],
  ["-name", "sort.nameDesc"],
  ["-created_at", "sort.createdDesc"],
  ["created_at", "sort.createdAsc"],
  ["-updated_at", "sort.updatedDesc"],
  ["-pull_count", "sort.pullsDesc"],
  ["-image_count", "sort.imagesDesc"],
];

/** The field of the create form an error is about: the API names it, or names the registry. */
function registryFieldOf(error) {
  const detail = error.detail || {};
  if (typeof detail.field === "string") return detail.field;
  if (["INVALID_ARGUMENT", "REGISTRY_EXISTS"].includes(error.code) && "name" in detail) return "name";
  return null;
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

export function sortSelect(options, current, onChange) {
  return h(
    "select",
    {
      class: "toolbar-select",
      "aria-label": t("toolbar.sort"),
      dataset: { testid: "sort" },
      onchange: (event) => onChange(event.target.value),
    },
    options.map(([value, key]) => h("option", { value, selected: value === current }, t(key))),
  );
}

export function searchBox(placeholderKey, onSearch) {
  const input = h("input", {
    type: "search",
    class: "toolbar-search",
    placeholder: t(placeholderKey),
    "aria-label": t(placeholderKey),
    dataset: { testid: "search" },
  });
  // Each text is searched once: Enter searches at once, and the typing's pending search of
  // the same text must not come 300 ms later and take the list back to its first page.
  let searched = "";
  const search = () => {
    const text = input.value.trim();
    if (text === searched) return;
    searched = text;
    onSearch(text);
  };
  input.addEventListener("input", debounce(search, 300));
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") search();
  });
  return input;
}

/**
 * The toolbar above a list: batch actions on the left, a name search and a sort on the right,
 * both of which reload the table from its first page.
 */
export function listToolbar({ left = [], searchKey, sorts, filters, table }) {
  return h(
    "div",
    { class: "toolbar" },
    h("div", { class: "toolbar-left" }, ...left),
    h(
      "div",
      { class: "toolbar-right" },
      searchBox(searchKey, (q) => {
        filters.q = q;
        table.reload({ resetPage: true });
      }),
      sortSelect(sorts, filters.sort, (sort) => {
        filters.sort = sort;
        table.reload({ resetPage: true });
      }),
    ),
  );
}

/** `15 minutes`: the registry pull-count refresh interval the server is configured with
 * (the session carries it), as the introduction and the column's hint quote it. */
export function refreshInterval(session) {
  const seconds = session && session.registry_count_refresh_seconds;
  if (!seconds) return null;
  if (seconds % 3600 === 0) return t("interval.hours", { n: seconds / 3600 });
  if (seconds % 60 === 0) return t("interval.minutes", { n: seconds / 60 });
  return t("interval.seconds", { n: seconds });
}

function refreshHint(session) {
  const interval = refreshInterval(session);
  return interval ? t("registries.pullRefreshHint", { interval }) : t("registries.pullRefreshPeriodic");
}

/** Columns shared by the user and the shared registry lists. */
function registryColumns(base, operations, session) {
  const columns = [
    {
      label: "col.nameId",
      class: "col-name",
      cell: (r) =>
        h(
          "div",
          { class: "name-cell" },
          r.status === "available"
            ? link(`#/${base}/${encodeURIComponent(r.name)}/images`, r.name, { class: "strong" })
            : h("span", { class: "strong" }, r.name),
          h("div", { class: "mono muted small" }, r.id),
          r.remark ? h("div", { class: "remark muted small", title: r.remark }, r.remark) : null,
        ),
    },
    { label: "col.status", cell: (r) => statusBadge(r.status) },
    { label: "col.public", cell: (r) => visibilityBadge(r.public) },
    {
      label: "col.pullCount",
      class: "num",
      cell: (r) =>
        h(
          "div",
          { title: refreshHint(session) },
          h("div", { class: "count" }, fmtCount(r.pull_count)),
          h(
            "div",
            { class: "muted small", title: fmtTime(r.pull_count_refreshed_at) },
            r.pull_count_refreshed_at
              ? t("registries.refreshedAt", { time: fmtShortTime(r.pull_count_refreshed_at) })
              : t("registries.notRefreshed"),
          ),
        ),
    },
    { label: "col.imageCount", class: "num", cell: (r) => h("span", { class: "count" }, fmtCount(r.image_count)) },
    { label: "col.storage", class: "col-usage", cell: usageCell },
    {
      label: "col.group",
      class: "col-group",
      cell: (r) => h("span", { class: "group-name", title: r.project_group || null }, r.project_group || "-"),
    },
    { label: "col.labels", cell: (r) => labelChips(r.labels) },
    {
      label: "col.createdUpdated",
      class: "col-time",
      cell: (r) =>
        h(
          "div",
          {},
          h("div", { title: fmtTime(r.created_at) }, fmtMinute(r.created_at)),
          h("div", { class: "muted", title: fmtTime(r.updated_at) }, fmtMinute(r.updated_at)),
        ),
    },
  ];
  if (operations) columns.push({ label: "col.operations", class: "col-ops", cell: operations });
  return columns;
}

async function groupsForSelect(session, { creatable = false } = {}) {
  try {
    const data = await api.get("/api/v1/project-groups", { page_size: 100 });
    return (data.items || []).filter(
      (g) => !creatable || session.is_admin || ["owner", "developer"].includes(g.role),
    );
  } catch {
    return [];
  }
}

/** Images and tags a registry holds, for the delete dialogs. */
async function contents(name) {
  const registry = await api.get(registryPath(name));
  let tags = null;
  if (registry.image_count > 0) {
    try {
      const images = await api.get(`${registryPath(name)}/images`, { page_size: 100 });
      if ((images.total || 0) <= (images.items || []).length) {
        tags = images.items.reduce((sum, image) => sum + (image.tag_count || 0), 0);
      }
    } catch {
      tags = null;
    }
  }
  return { registry, images: registry.image_count, tags };
}

function holdsText(images, tags) {
  if (!images) return t("registries.delete.empty");
  return tags === null ? t("registries.delete.holdsImages", { n: images }) : t("registries.delete.holds", { n: images, tags });
}

async function waitUntilGone(name) {
  const deadline = Date.now() + DELETE_WAIT_MS;
  while (Date.now() < deadline) {
    try {
      await api.get(registryPath(name));
    } catch (error) {
      if (error.status === 404) return true;
    }
    await new Promise((resolve) => setTimeout(resolve, DELETE_POLL_MS));
  }
  return false;
}

export function registriesView(ctx) {
  const filters = { q: "", group: "", label: "", sort: "name" };
  const batchButton = button("action.batchDelete", () => openBatchDelete(), {
    kind: "danger-outline",
    disabled: true,
    dataset: { testid: "batch-delete" },
  });

  const manages = (r) => rightsIn(r).manage; // the server's policy says, in `rights`

  const operations = (r) => {
    // Only the group's owners (and admins) may change or delete a registry; others see why.
    const allowed = manages(r);
    const disabled = r.status !== "available" || !allowed;
    const title = allowed || r.status !== "available" ? null : t("rights.ownersOnly");
    return h(
      "div",
      { class: "ops" },
      button("action.modify", () => openModify(r), { kind: "link", disabled, title, dataset: { op: "modify" } }),
      button("action.modifyLabels", () => openLabels(r), { kind: "link", disabled, title, dataset: { op: "labels" } }),
      button("action.delete", () => openDelete(r), { kind: "link-danger", disabled, title, dataset: { op: "delete" } }),
    );
  };

  const table = createTable({
    columns: registryColumns("registries", operations, ctx.session),
    rowKey: (r) => r.name,
    selectable: true,
    canSelect: manages,
    testid: "registry-table",
    rowClass: (r) => (r.status === "deleting" ? "row-deleting" : null),
    onSelection: (items) => {
      batchButton.disabled = items.length === 0;
      replace(batchButton, items.length ? t("action.batchDeleteN", { n: items.length }) : t("action.batchDelete"));
    },
    load: async (paging) => {
      return api.get("/api/v1/registries", {
        ...pageQuery(paging),
        q: filters.q,
        project_group: filters.group,
        label: filters.label,
        sort: filters.sort,
      });
    },
  });

  const groupFilter = h(
    "select",
    {
      class: "toolbar-select",
      "aria-label": t("toolbar.group"),
      dataset: { testid: "group-filter" },
      onchange: (event) => {
        filters.group = event.target.value;
        table.reload({ resetPage: true });
      },
    },
    h("option", { value: "" }, t("toolbar.allGroups")),
  );
  groupsForSelect(ctx.session).then((groups) => {
    for (const g of groups) groupFilter.append(h("option", { value: g.name }, g.name));
  });

  const labelError = h("div", { class: "toolbar-error", role: "alert" });
  const labelFilter = h("input", {
    type: "search",
    class: "toolbar-search toolbar-label",
    placeholder: t("toolbar.labelPlaceholder"),
    "aria-label": t("toolbar.labelPlaceholder"),
    dataset: { testid: "label-filter" },
  });
  const applyLabel = () => {
    const value = labelFilter.value.trim();
    if (value && (!value.includes(":") || value.startsWith(":"))) {
      replace(labelError, t("toolbar.labelFormat"));
      return;
    }
    replace(labelError, "");
    if (value === filters.label) return;
    filters.label = value;
    table.reload({ resetPage: true });
  };
  labelFilter.addEventListener("input", debounce(applyLabel, 400));
  labelFilter.addEventListener("keydown", (event) => event.key === "Enter" && applyLabel());

  const toolbar = h(
    "div",
    { class: "toolbar" },
    h(
      "div",
      { class: "toolbar-left" },
      button("registries.create", () => openCreate(), { kind: "primary", dataset: { testid: "create-registry" } }),
      batchButton,
    ),
    h(
      "div",
      { class: "toolbar-right" },
      searchBox("toolbar.searchName", (q) => {
        filters.q = q;
        table.reload({ resetPage: true });
      }),
      groupFilter,
      h("div", { class: "toolbar-field" }, labelFilter, labelError),
      sortSelect(REGISTRY_SORTS, filters.sort, (sort) => {
        filters.sort = sort;
        table.reload({ resetPage: true });
      }),
      h(
        "button",
        {
          type: "button",
          class: "btn-icon",
          title: t("action.refresh"),
          "aria-label": t("action.refresh"),
          onclick: () => table.reload(),
        },
        h("span", { class: "icon icon-refresh", "aria-hidden": "true" }),
      ),
    ),
  );

  const el = h(
    "section",
    { class: "page", dataset: { testid: "page-registries" } },
    pageHeader(t("nav.registries"), [], []),
    h("p", { class: "page-intro", dataset: { testid: "registries-intro" } }, t("registries.intro", { interval: refreshInterval(ctx.session) })),
    toolbar,
    table.el,
  );
  table.reload();

  // --- create -------------------------------------------------------------------------------

  async function openCreate() {
    const groups = await groupsForSelect(ctx.session, { creatable: true });
    const nameInput = h("input", { type: "text", maxlength: "63", autocomplete: "off", dataset: { testid: "name" } });
    const remarkInput = h("textarea", { rows: "3", maxlength: "1024", dataset: { testid: "remark" } });
    const visibility = visibilityRadios(false);
    const groupSelect = h(
      "select",
      { dataset: { testid: "group" } },
      groups.length ? null : h("option", { value: "" }, t("registries.form.defaultGroup")),
      groups.map((g) =>
        h("option", { value: g.name, selected: g.name === ctx.session.username }, g.name),
      ),
    );
    const labels = labelEditor({});
    const fields = {
      name: field("form.name", nameInput, { required: true, hint: t("registries.form.nameHint") }),
      remark: field("form.remark", remarkInput),
      public: field("form.public", visibility.el, { hint: t("registries.form.publicHint") }),
      project_group: field("form.group", groupSelect),
      labels: field("form.labels", labels.el),
    };
    labels.setError = fields.labels.setError;
    nameInput.addEventListener("input", () => {
      const problem = registryNameProblem(nameInput.value);
      fields.name.setError(problem && nameInput.value ? t(problem) : "");
    });
    openDialog({
      title: t("registries.create.title"),
      testid: "create-dialog",
      wide: true,
      confirmKey: "action.create",
      body: h("div", { class: "form" }, Object.values(fields).map((f) => f.el)),
      onConfirm: async (dlg) => {
        const problem = registryNameProblem(nameInput.value);
        fields.name.setError(problem ? t(problem) : "");
        let labelValues;
        try {
          labelValues = labels.value();
          fields.labels.setError("");
        } catch (error) {
          fields.labels.setError(error.message);
          return false;
        }
        if (problem) return false;
        const body = {
          name: nameInput.value,
          remark: remarkInput.value,
          public: visibility.value(),
          labels: labelValues,
        };
        if (groupSelect.value) body.project_group = groupSelect.value;
        try {
          await api.post("/api/v1/registries", body);
        } catch (error) {
          showError(error, fields, dlg.setError, registryFieldOf);
          return false;
        }
        toast(t("registries.create.done", { name: body.name }));
        table.reload();
        return true;
      },
    });
  }

  // --- modify (visibility and remark) --------------------------------------------------------

  function openModify(r) {
    const visibility = visibilityRadios(r.public);
    const remarkInput = h("textarea", { rows: "3", maxlength: "1024", value: r.remark || "" });
    const fields = {
      name: field("form.name", h("div", { class: "readonly strong" }, r.name)),
      public: field("form.public", visibility.el, { hint: t("registries.form.publicHint") }),
      remark: field("form.remark", remarkInput),
    };
    openDialog({
      title: t("registries.modify.title", { name: r.name }),
      testid: "modify-dialog",
      body: h("div", { class: "form" }, Object.values(fields).map((f) => f.el)),
      onConfirm: async (dlg) => {
        const body = {};
        if (visibility.value() !== r.public) body.public = visibility.value();
        if (remarkInput.value !== (r.remark || "")) body.remark = remarkInput.value;
        if (!Object.keys(body).length) return true;
        try {
          await api.patch(registryPath(r.name), body);
        } catch (error) {
          showError(error, fields, dlg.setError);
          return false;
        }
        toast(t("registries.modify.done", { name: r.name }));
        table.reload();
        return true;
      },
    });
  }

  // --- modify labels ------------------------------------------------------------------------

  function openLabels(r) {
    const labels = labelEditor(r.labels || {});
    const fields = { labels: field("form.labels", labels.el, { hint: t("registries.labels.hint") }) };
    openDialog({
      title: t("registries.labels.title", { name: r.name }),
      testid: "labels-dialog",
      wide: true,
      body: h("div", { class: "form" }, fields.labels.el),
      onConfirm: async (dlg) => {
        let value;
        try {
          value = labels.value();
        } catch (error) {
          fields.labels.setError(error.message);
          return false;
        }
        try {
          await api.put(`${registryPath(r.name)}/labels`, { labels: value });
        } catch (error) {
          showError(error, fields, dlg.setError);
          return false;
        }
        toast(t("registries.labels.done", { name: r.name }));
        table.reload();
        return true;
      },
    });
  }

  // --- delete -------------------------------------------------------------------------------

  async function openDelete(r) {
    let info;
    try {
      info = await contents(r.name);
    } catch (error) {
      toast(describeError(error), "error");
      table.reload();
      return;
    }
    const tick = h("input", { type: "checkbox", dataset: { testid: "delete-images" } });
    const needsTick = info.images > 0;
    const body = h(
      "div",
      { class: "confirm-body" },
      h("p", { class: "confirm-question" }, t("registries.delete.question", { name: r.name })),
      h("p", { class: needsTick ? "warning" : "muted" }, holdsText(info.images, info.tags)),
      needsTick
        ? h(
            "label",
            { class: "check-row" },
            tick,
            h("span", {}, t("registries.delete.tick")),
          )
        : null,
      needsTick ? h("p", { class: "muted small" }, t("registries.delete.tickHint")) : null,
    );
    const dialog = openDialog({
      title: t("registries.delete.title"),
      testid: "delete-dialog",
      confirmKey: "action.delete",
      confirmKind: "danger",
      confirmDisabled: needsTick,
      body,
      onConfirm: async (dlg) => {
        const { status } = await api.del(registryPath(r.name), {
          delete_images: tick.checked ? "true" : undefined,
        });
        if (status === 202) {
          dlg.setBusy(true, "status.deletingEllipsis");
          dlg.setStatus(t("registries.delete.inProgress", { name: r.name }));
          table.reload();
          const gone = await waitUntilGone(r.name);
          if (!gone) {
            dlg.setError(t("registries.delete.slow"));
            return false;
          }
        }
        toast(t("registries.delete.done", { name: r.name }));
        table.reload();
        return true;
      },
    });
    tick.addEventListener("change", () => dialog.block(needsTick && !tick.checked));
  }

  async function openBatchDelete() {
    const chosen = table.selectedItems();
    if (!chosen.length) return;
    const infos = await Promise.all(
      chosen.map((r) => contents(r.name).catch(() => ({ registry: r, images: r.image_count, tags: null }))),
    );
    const needsTick = infos.some((i) => i.images > 0);
    const tick = h("input", { type: "checkbox", dataset: { testid: "delete-images" } });
    const list = h(
      "ul",
      { class: "confirm-list", dataset: { testid: "batch-list" } },
      infos.map((info) =>
        h(
          "li",
          { dataset: { name: info.registry.name } },
          h("span", { class: "strong" }, info.registry.name),
          h("span", { class: "muted" }, ` — ${holdsText(info.images, info.tags)}`),
          h("span", { class: "result" }),
        ),
      ),
    );
    const dialog = openDialog({
      title: t("registries.batch.title"),
      testid: "batch-delete-dialog",
      confirmKey: "action.delete",
      confirmKind: "danger",
      confirmDisabled: needsTick,
      wide: true,
      body: h(
        "div",
        { class: "confirm-body" },
        h("p", { class: "confirm-question" }, t("registries.batch.question", { n: infos.length })),
        list,
        needsTick ? h("label", { class: "check-row" }, tick, h("span", {}, t("registries.delete.tick"))) : null,
        needsTick ? h("p", { class: "muted small" }, t("registries.delete.tickHint")) : null,
      ),
      onConfirm: async (dlg) => {
        const { data } = await api.post("/api/v1/registries:batchDelete", {
          names: infos.map((i) => i.registry.name),
          delete_images: tick.checked,
        });
        const failed = showResults(list, data.results);
        table.clearSelection();
        table.reload();
        const ok = data.results.length - failed;
        if (failed) {
          dlg.setError(t("batch.someFailed", { ok, failed }));
          dlg.finish();
          return false;
        }
        toast(t("registries.batch.done", { n: ok }));
        return true;
      },
    });
    tick.addEventListener("change", () => dialog.block(needsTick && !tick.checked));
  }

  return { el, refresh: () => table.refresh() };
}

/** Per-item results of a batch next to each name; returns how many failed. */
export function showResults(list, results) {
  let failed = 0;
  for (const result of results || []) {
    const item = [...list.children].find((li) => li.dataset.name === result.name);
    if (!item) continue;
    const slot = item.querySelector(".result");
    if (result.ok) {
      replace(slot, ` ✓ ${result.status === "deleting" ? t("status.deleting") : t("batch.ok")}`);
      slot.className = "result result-ok";
    } else {
      failed += 1;
      replace(slot, ` ✗ ${describeError(result.error)}`);
      slot.className = "result result-failed";
    }
  }
  return failed;
}

function visibilityRadios(isPublic) {
  const name = `vis-${Math.random().toString(36).slice(2, 8)}`;
  const priv = h("input", { type: "radio", name, value: "private", checked: !isPublic, dataset: { testid: "private" } });
  const pub = h("input", { type: "radio", name, value: "public", checked: isPublic, dataset: { testid: "public" } });
  return {
    el: h(
      "div",
      { class: "radios" },
      h("label", { class: "radio" }, priv, h("span", {}, t("visibility.private"))),
      h("label", { class: "radio" }, pub, h("span", {}, t("visibility.public"))),
    ),
    value: () => pub.checked,
  };
}

// --- shared registries (guide 37.4) ------------------------------------------------------------

export function sharedView(ctx) {
  const filters = { q: "", sort: "name" };
  const table = createTable({
    columns: registryColumns("shared", null, ctx && ctx.session),
    rowKey: (r) => r.name,
    testid: "shared-table",
    load: (paging) => api.get("/api/v1/shared/registries", { ...pageQuery(paging), q: filters.q, sort: filters.sort }),
  });
  const el = h(
    "section",
    { class: "page", dataset: { testid: "page-shared" } },
    pageHeader(t("nav.shared")),
    h("p", { class: "page-intro" }, t("shared.intro")),
    listToolbar({ searchKey: "toolbar.searchName", sorts: REGISTRY_SORTS, filters, table }),
    table.el,
  );
  table.reload();
  return { el, refresh: () => table.refresh() };
}
