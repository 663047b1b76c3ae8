// Image lists (guide 37.2.7, 37.3.1, 37.4.2) and tag lists (37.2.8, 37.3.2, 37.4.3). A user
// registry's lists have delete and batch delete for its group's developers and owners; for
// its guests, and in the shared and platform views, they are read-only.

import { api, imagePath, registryPath, tagPath } from "../api.js";
import { h, replace } from "../dom.js";
import { t } from "../i18n.js";
import {
  button,
  commandCell,
  copyButton,
  describeError,
  fmtCount,
  fmtSize,
  fmtTime,
  link,
  pageHeader,
  shortDigest,
  statusBadge,
  summary,
  toast,
  usageCell,
  visibilityBadge,
} from "./common.js";
import { openDialog } from "./dialog.js";
import { listToolbar, showResults } from "./registries.js";
import { retentionHref } from "./retention.js";
import { rightsInRegistry } from "./rights.js";
import { createTable, pageQuery } from "./table.js";

const enc = encodeURIComponent;

const IMAGE_SORTS = [
  ["name", "sort.nameAsc"],
  ["-created_at", "sort.createdDesc"],
  ["-updated_at", "sort.updatedDesc"],
  ["-pull_count", "sort.pullsDesc"],
];
const TAG_SORTS = [
  ["-created_at", "sort.createdDesc"],
  ["name", "sort.nameAsc"],
  ["-pull_count", "sort.pullsDesc"],
];

/** Where a mode's screens live: `registries` (mine), `shared` or `platform`. */
const ROOTS = {
  user: { base: "registries", navKey: "nav.registries" },
  shared: { base: "shared", navKey: "nav.shared" },
  platform: { base: "platform", navKey: "nav.platform" },
};

export function imagesHref(mode, registry) {
  return mode === "platform" ? "#/platform" : `#/${ROOTS[mode].base}/${enc(registry)}/images`;
}

export function tagsHref(mode, registry, image) {
  return `#/${ROOTS[mode].base}/${enc(registry)}/images/${enc(image)}/tags`;
}

function registrySummary(r) {
  return summary([
    ["col.resourceId", h("span", { class: "mono" }, r.id)],
    ["col.status", statusBadge(r.status)],
    ["col.public", visibilityBadge(r.public)],
    ["col.address", h("span", { class: "command" }, h("code", {}, r.address), copyButton(r.address)), true],
    ["col.imageCount", h("span", { class: "count", dataset: { testid: "image-count" } }, fmtCount(r.image_count))],
    ["col.storage", usageCell(r)],
    [
      "col.immutableTags",
      h(
        "span",
        { dataset: { testid: "immutable-tags" }, title: t("immutable.hint") },
        r.immutable_tags && r.immutable_tags.length ? r.immutable_tags.map((p) => h("code", { class: "chip" }, p)) : t("immutable.none"),
      ),
    ],
    ["col.group", r.project_group || "-"],
    ["form.remark", h("span", { class: "remark-full" }, r.remark || "-"), true],
  ]);
}

function commandsBox(titleKey, lines) {
  return h(
    "details",
    { class: "help-box" },
    h("summary", {}, t(titleKey)),
    lines.map(([key, command]) =>
      h("div", { class: "help-line" }, h("div", { class: "muted small" }, t(key)), h("div", { class: "command" }, h("code", {}, command), copyButton(command))),
    ),
  );
}

// --- image list --------------------------------------------------------------------------------

/** A user registry's lists: the batch delete button and whether the user may delete there,
 * known before the first rows draw (`ready`). Until then, and for the group's guests, the
 * lists show no delete buttons or check boxes. `table()` gives the list's table. */
function deleteControls(ctx, mode, registry, onBatchDelete, table) {
  const rights = { change: false };
  if (mode !== "user") return { batchButton: null, rights, ready: Promise.resolve() };
  const batchButton = button("action.batchDelete", onBatchDelete, {
    kind: "danger-outline",
    disabled: true,
    hidden: true,
    dataset: { testid: "batch-delete" },
  });
  const ready = rightsInRegistry(ctx.session, registry).then((known) => {
    rights.change = known.change;
    batchButton.hidden = !known.change;
    table().el.classList.toggle("read-only", !known.change);
  });
  return { batchButton, rights, ready };
}

export function imagesView(ctx, { mode, registry }) {
  const filters = { q: "", sort: "name" };
  const head = h("div", { class: "registry-head" });
  const { batchButton, rights, ready } = deleteControls(ctx, mode, registry, () => openBatchDelete(), () => table);

  const columns = [
    {
      label: "col.name",
      class: "col-name",
      cell: (i) => {
        const name = mode === "platform" ? i.full_name : i.name;
        return link(tagsHref(mode, i.registry, i.name), name, { class: "strong image-name", title: name });
      },
    },
    { label: "col.latestTag", cell: (i) => h("span", { class: "tag-name" }, i.latest_tag || "-") },
    { label: "col.imagePulls", class: "num", cell: (i) => h("span", { class: "count", dataset: { testid: "pulls" } }, fmtCount(i.pull_count)) },
    { label: "col.size", class: "num", cell: (i) => h("span", { dataset: { testid: "size" } }, fmtSize(i.size_bytes)) },
    { label: "col.pullCommand", class: "col-command", cell: (i) => commandCell(i.pull_command) },
    { label: "col.created", class: "col-time", cell: (i) => fmtTime(i.created_at) },
    {
      label: "col.operations",
      class: "col-ops",
      cell: (i) =>
        h(
          "div",
          { class: "ops" },
          link(tagsHref(mode, i.registry, i.name), t("action.tagList"), { class: "btn btn-link", dataset: { op: "tags" } }),
          rights.change ? button("action.delete", () => openDelete(i), { kind: "link-danger", dataset: { op: "delete" } }) : null,
        ),
    },
  ];

  const table = createTable({
    columns,
    rowKey: (i) => (mode === "platform" ? i.full_name : i.name),
    selectable: mode === "user",
    canSelect: () => rights.change,
    testid: "image-table",
    emptyKey: mode === "user" ? "images.emptyUser" : "table.empty",
    onSelection: (items) => {
      if (!batchButton) return;
      batchButton.disabled = items.length === 0;
      replace(batchButton, items.length ? t("action.batchDeleteN", { n: items.length }) : t("action.batchDelete"));
    },
    load: async (paging) => {
      await ready;
      return api.get(mode === "platform" ? "/api/v1/platform/images" : `${registryPath(registry)}/images`, {
        ...pageQuery(paging),
        q: filters.q,
        sort: filters.sort,
      });
    },
  });

  let lastRegistry = null;
  async function loadHead() {
    if (mode === "platform") return;
    try {
      const r = await api.get(registryPath(registry));
      await ready; // push commands only for those who may push
      const fingerprint = JSON.stringify(r);
      if (fingerprint === lastRegistry) return;
      lastRegistry = fingerprint;
      const pushes = rights.change;
      const lines =
        pushes
          ? [
              ["images.push.tag", `docker tag {${t("images.push.local")}} ${r.address}/{${t("images.push.image")}}:{tag}`],
              ["images.push.push", `docker push ${r.address}/{${t("images.push.image")}}:{tag}`],
              ["images.push.pull", `docker pull ${r.address}/{${t("images.push.image")}}:{tag}`],
            ]
          : [["images.push.pull", `docker pull ${r.address}/{${t("images.push.image")}}:{tag}`]];
      // An empty registry's list points at the push commands: show them open.
      const box = commandsBox(pushes ? "images.push.title" : "images.pull.title", lines);
      box.open = r.image_count === 0;
      replace(head, registrySummary(r), box);
      listPart.hidden = false;
    } catch (error) {
      // The error shows once, here; the list below (its own error, a pager) would repeat it.
      replace(head, h("div", { class: "notice notice-error", dataset: { testid: "page-error" } }, describeError(error)));
      listPart.hidden = true;
    }
  }

  const listPart = h(
    "div",
    { class: "list-part" },
    h("h2", { class: "section-title" }, t("images.title")),
    listToolbar({ left: [batchButton], searchKey: "toolbar.searchImage", sorts: IMAGE_SORTS, filters, table }),
    table.el,
  );
  const title = mode === "platform" ? t("nav.platform") : registry;
  const crumbs =
    mode === "platform"
      ? []
      : [
          [t(ROOTS[mode].navKey), `#/${ROOTS[mode].base}`],
          [registry, null],
        ];
  const el = h(
    "section",
    { class: "page", dataset: { testid: "page-images" } },
    pageHeader(
      title,
      crumbs,
      mode === "user" ? [link(retentionHref(registry), t("retention.link"), { class: "btn btn-default", dataset: { testid: "retention-link" } })] : [],
    ),
    mode === "platform" ? h("p", { class: "page-intro" }, t("platform.intro")) : null,
    head,
    listPart,
  );
  loadHead();
  table.reload();

  function openDelete(image) {
    openDialog({
      title: t("images.delete.title"),
      testid: "delete-dialog",
      confirmKey: "action.delete",
      confirmKind: "danger",
      body: h(
        "div",
        { class: "confirm-body" },
        h("p", { class: "confirm-question" }, t("images.delete.question", { name: image.full_name })),
        h("p", { class: "warning" }, t("images.delete.tags", { n: image.tag_count })),
      ),
      onConfirm: async () => {
        await api.del(imagePath(registry, image.name));
        toast(t("images.delete.done", { name: image.full_name }));
        table.reload();
        loadHead();
        return true;
      },
    });
  }

  function openBatchDelete() {
    const chosen = table.selectedItems();
    if (!chosen.length) return;
    const list = h(
      "ul",
      { class: "confirm-list", dataset: { testid: "batch-list" } },
      chosen.map((i) =>
        h(
          "li",
          { dataset: { name: i.name } },
          h("span", { class: "strong" }, i.full_name),
          h("span", { class: "muted" }, ` — ${t("images.delete.tagCount", { n: i.tag_count })}`),
          h("span", { class: "result" }),
        ),
      ),
    );
    const tagTotal = chosen.reduce((sum, i) => sum + (i.tag_count || 0), 0);
    openDialog({
      title: t("images.batch.title"),
      testid: "batch-delete-dialog",
      confirmKey: "action.delete",
      confirmKind: "danger",
      wide: true,
      body: h(
        "div",
        { class: "confirm-body" },
        h("p", { class: "confirm-question" }, t("images.batch.question", { n: chosen.length, tags: tagTotal })),
        list,
      ),
      onConfirm: async (dlg) => {
        const { data } = await api.post(`${registryPath(registry)}/images:batchDelete`, {
          images: chosen.map((i) => i.name),
        });
        const failed = showResults(list, data.results);
        table.clearSelection();
        table.reload();
        loadHead();
        if (failed) {
          dlg.setError(t("batch.someFailed", { ok: data.results.length - failed, failed }));
          dlg.finish();
          return false;
        }
        toast(t("images.batch.done", { n: data.results.length }));
        return true;
      },
    });
  }

  return {
    el,
    refresh: () => Promise.all([table.refresh(), loadHead()]),
  };
}

// --- tag list ------------------------------------------------------------------------------------

export function tagsView(ctx, { mode, registry, image }) {
  const filters = { sort: "-created_at", q: "" };
  const head = h("div", { class: "image-head" });
  const fullName = `${registry}/${image}`;
  const { batchButton, rights, ready } = deleteControls(ctx, mode, registry, () => openBatchDelete(), () => table);

  const columns = [
    { label: "col.name", class: "col-name", cell: (tag) => h("span", { class: "tag-name strong", title: tag.name }, tag.name) },
    {
      label: "col.digest",
      cell: (tag) =>
        h(
          "div",
          { class: "command" },
          h("code", { class: "digest", title: tag.digest }, shortDigest(tag.digest)),
          copyButton(tag.digest, "action.copyDigest"),
          tag.platforms && tag.platforms.length ? h("div", { class: "muted small platforms" }, tag.platforms.join(", ")) : null,
        ),
    },
    { label: "col.pullCommand", class: "col-command", cell: (tag) => commandCell(tag.pull_command) },
    { label: "col.imagePulls", class: "num", cell: (tag) => h("span", { class: "count", dataset: { testid: "pulls" } }, fmtCount(tag.pull_count)) },
    { label: "col.size", class: "num", cell: (tag) => fmtSize(tag.size_bytes) },
    { label: "col.created", class: "col-time", cell: (tag) => fmtTime(tag.created_at) },
  ];
  if (mode === "user") {
    columns.push({
      label: "col.operations",
      class: "col-ops col-delete",
      cell: (tag) =>
        rights.change
          ? h("div", { class: "ops" }, button("action.delete", () => openDelete(tag), { kind: "link-danger", dataset: { op: "delete" } }))
          : null,
    });
  }

  const table = createTable({
    columns,
    rowKey: (tag) => tag.name,
    selectable: mode === "user",
    canSelect: () => rights.change,
    testid: "tag-table",
    onSelection: (items) => {
      if (!batchButton) return;
      batchButton.disabled = items.length === 0;
      replace(batchButton, items.length ? t("action.batchDeleteN", { n: items.length }) : t("action.batchDelete"));
    },
    load: async (paging) => {
      await ready;
      return api.get(`${imagePath(registry, image)}/-/tags`, { ...pageQuery(paging), sort: filters.sort, q: filters.q });
    },
  });

  let lastImage = null;
  let gone = false;
  async function loadHead() {
    if (gone) return;
    try {
      const i = await api.get(imagePath(registry, image));
      const fingerprint = JSON.stringify(i);
      if (fingerprint === lastImage) return;
      lastImage = fingerprint;
      replace(
        head,
        summary([
          ["col.image", h("span", { class: "strong" }, i.full_name)],
          ["col.latestTag", i.latest_tag || "-"],
          ["col.imagePulls", h("span", { class: "count", dataset: { testid: "image-pulls" } }, fmtCount(i.pull_count))],
          ["col.tagCount", fmtCount(i.tag_count)],
          ["col.size", fmtSize(i.size_bytes)],
          ["col.pullCommand", commandCell(i.pull_command), true],
        ]),
      );
      tagListPart.hidden = false;
    } catch (error) {
      if (error.status === 404) gone = true;
      tagListPart.hidden = true; // the error shows once, here
      replace(
        head,
        h(
          "div",
          { class: "notice notice-error" },
          error.status === 404 ? t("tags.imageGone", { name: fullName }) : describeError(error),
          " ",
          link(imagesHref(mode, registry), t("tags.back")),
        ),
      );
    }
  }

  const tagListPart = h(
    "div",
    { class: "list-part" },
    h("h2", { class: "section-title" }, t("action.tagList")),
    listToolbar({ left: [batchButton], searchKey: "toolbar.searchTag", sorts: TAG_SORTS, filters, table }),
    table.el,
  );
  const crumbs =
    mode === "platform"
      ? [
          [t("nav.platform"), "#/platform"],
          [fullName, null],
        ]
      : [
          [t(ROOTS[mode].navKey), `#/${ROOTS[mode].base}`],
          [registry, imagesHref(mode, registry)],
          [image, null],
        ];
  const el = h(
    "section",
    { class: "page", dataset: { testid: "page-tags" } },
    pageHeader(t("tags.title", { name: image }), crumbs),
    head,
    tagListPart,
  );
  loadHead();
  table.reload();

  function afterDelete(imageDeleted) {
    if (imageDeleted) {
      toast(t("tags.delete.imageDeleted", { name: fullName }));
      ctx.navigate(imagesHref(mode, registry));
      return;
    }
    table.reload();
    loadHead();
  }

  function openDelete(tag) {
    const last = table.total === 1;
    openDialog({
      title: t("tags.delete.title"),
      testid: "delete-dialog",
      confirmKey: "action.delete",
      confirmKind: "danger",
      body: h(
        "div",
        { class: "confirm-body" },
        h("p", { class: "confirm-question" }, t("tags.delete.question", { name: `${fullName}:${tag.name}` })),
        last ? h("p", { class: "warning", dataset: { testid: "last-tag" } }, t("tags.delete.last", { name: fullName })) : null,
      ),
      onConfirm: async () => {
        const { data } = await api.del(tagPath(registry, image, tag.name));
        toast(t("tags.delete.done", { name: tag.name }));
        afterDelete(Boolean(data && data.image_deleted));
        return true;
      },
    });
  }

  function openBatchDelete() {
    const chosen = table.selectedItems();
    if (!chosen.length) return;
    const all = chosen.length === table.total;
    const list = h(
      "ul",
      { class: "confirm-list", dataset: { testid: "batch-list" } },
      chosen.map((tag) =>
        h(
          "li",
          { dataset: { name: tag.name } },
          h("span", { class: "strong" }, `${fullName}:${tag.name}`),
          h("span", { class: "muted mono" }, ` — ${shortDigest(tag.digest)}`),
          h("span", { class: "result" }),
        ),
      ),
    );
    openDialog({
      title: t("tags.batch.title"),
      testid: "batch-delete-dialog",
      confirmKey: "action.delete",
      confirmKind: "danger",
      wide: true,
      body: h(
        "div",
        { class: "confirm-body" },
        h("p", { class: "confirm-question" }, t("tags.batch.question", { n: chosen.length, name: fullName })),
        list,
        all ? h("p", { class: "warning", dataset: { testid: "last-tag" } }, t("tags.delete.last", { name: fullName })) : null,
      ),
      onConfirm: async (dlg) => {
        const { data } = await api.post(`${imagePath(registry, image)}/-/tags:batchDelete`, {
          tags: chosen.map((tag) => tag.name),
        });
        const failed = showResults(list, data.results);
        if (failed) {
          dlg.setError(t("batch.someFailed", { ok: data.results.length - failed, failed }));
          dlg.finish();
          table.reload();
          return false;
        }
        toast(t("tags.batch.done", { n: data.results.length }));
        afterDelete(data.results.some((r) => r.image_deleted));
        return true;
      },
    });
  }

  return { el, refresh: () => Promise.all([table.refresh(), loadHead()]) };
}
