// A data table over one list endpoint: check boxes, paging, an empty state, and a quiet
// refresh (the app polls it) that rebuilds the rows only when the answer changed.

import { h, replace } from "../dom.js";
import { t } from "../i18n.js";
import { describeError } from "./common.js";

export const PAGE_SIZES = [10, 20, 50, 100];

/**
 * The query of one page: by its number, or (`cursor`) after the page before it. Every list
 * answers a `next` cursor and serves page numbers only near its start, so the table follows
 * its cursors.
 */
export function pageQuery({ page, pageSize, cursor }) {
  return cursor ? { cursor, page_size: pageSize } : { page, page_size: pageSize };
}

export function createTable({
  columns,
  load,
  rowKey,
  selectable = false,
  canSelect = () => true, // rows the user may not act on get no check box
  onSelection = () => {},
  emptyKey = "table.empty",
  pageSize = 20,
  testid = "table",
  rowClass,
}) {
  // cursors[n]: the cursor of page n + 1 (from the answer of page n), for lists that page by
  // cursor (their answers carry `next`); null: the list pages by number.
  const state = { page: 1, pageSize, total: 0, items: [], selected: new Set(), last: null, cursors: null };
  const headCheck = selectable
    ? h("input", {
        type: "checkbox",
        "aria-label": t("table.selectAll"),
        dataset: { testid: "select-all" },
        onchange: (event) => {
          for (const item of state.items.filter(canSelect)) {
            const key = rowKey(item);
            if (event.target.checked) state.selected.add(key);
            else state.selected.delete(key);
          }
          renderRows();
          onSelection(selectedItems());
        },
      })
    : null;
  const thead = h(
    "thead",
    {},
    h(
      "tr",
      {},
      selectable ? h("th", { class: "col-check" }, headCheck) : null,
      columns.map((col) => h("th", { class: col.class || null, scope: "col" }, t(col.label))),
    ),
  );
  const tbody = h("tbody");
  const message = h("div", { class: "table-message", role: "status" });
  const totalText = h("span", { class: "pager-total" });
  const pageText = h("span", { class: "pager-page" });
  const prev = h(
    "button",
    { type: "button", class: "btn btn-default btn-small", onclick: () => go(state.page - 1) },
    t("pager.prev"),
  );
  const next = h(
    "button",
    { type: "button", class: "btn btn-default btn-small", onclick: () => go(state.page + 1) },
    t("pager.next"),
  );
  const sizeSelect = h(
    "select",
    {
      class: "pager-size",
      "aria-label": t("pager.size"),
      onchange: (event) => {
        state.pageSize = Number(event.target.value);
        go(1);
      },
    },
    PAGE_SIZES.map((size) =>
      h("option", { value: String(size), selected: size === pageSize }, t("pager.perPage", { n: size })),
    ),
  );
  const pager = h("div", { class: "pager" }, totalText, sizeSelect, prev, pageText, next);
  const el = h(
    "div",
    { class: "table-wrap", dataset: { testid } },
    h("div", { class: "table-scroll" }, h("table", { class: "data" }, thead, tbody)),
    message,
    pager,
  );

  function selectedItems() {
    return state.items.filter((item) => state.selected.has(rowKey(item)));
  }

  function renderRows() {
    const rows = state.items.map((item) => {
      const key = rowKey(item);
      const check = selectable
        ? h(
            "td",
            { class: "col-check" },
            canSelect(item) &&
            h("input", {
              type: "checkbox",
              checked: state.selected.has(key),
              "aria-label": t("table.select", { name: key }),
              onchange: (event) => {
                if (event.target.checked) state.selected.add(key);
                else state.selected.delete(key);
                syncHead();
                onSelection(selectedItems());
              },
            }),
          )
        : null;
      return h(
        "tr",
        { dataset: { key }, class: rowClass ? rowClass(item) : null },
        check,
        columns.map((col) => h("td", { class: col.class || null }, col.cell(item))),
      );
    });
    replace(tbody, rows);
    syncHead();
  }

  function syncHead() {
    if (!headCheck) return;
    const keys = state.items.filter(canSelect).map(rowKey);
    headCheck.disabled = keys.length === 0;
    const chosen = keys.filter((k) => state.selected.has(k)).length;
    headCheck.checked = keys.length > 0 && chosen === keys.length;
    headCheck.indeterminate = chosen > 0 && chosen < keys.length;
  }

  function renderPager() {
    const pages = Math.max(1, Math.ceil(state.total / state.pageSize));
    replace(totalText, t("pager.total", { n: state.total }));
    replace(pageText, t("pager.page", { page: state.page, pages }));
    prev.disabled = state.page <= 1;
    next.disabled = state.cursors ? !state.cursors[state.page] : state.page >= pages;
  }

  let sequence = 0;

  async function fetchPage(quiet) {
    // Only the newest request may draw: an older poll answering late must not bring back
    // a row that was just deleted.
    sequence += 1;
    const mine = sequence;
    let data;
    const cursor = state.cursors && state.page > 1 ? state.cursors[state.page - 1] : undefined;
    try {
      data = await load({ page: state.page, pageSize: state.pageSize, cursor });
    } catch (error) {
      if (mine !== sequence) return;
      if (cursor && error.code === "INVALID_ARGUMENT") {
        go(1); // the cursor no longer fits the list (its sort or search changed)
        return;
      }
      if (!quiet) {
        state.items = [];
        state.last = null;
        replace(tbody);
        replace(message, describeError(error));
        message.className = "table-message table-error";
        pager.hidden = true; // nothing to page through
      }
      return;
    }
    if (mine !== sequence) return;
    const fingerprint = JSON.stringify(data);
    if (quiet && fingerprint === state.last) return;
    state.last = fingerprint;
    state.items = data.items || [];
    state.total = data.total || 0;
    if ("next" in data) {
      state.cursors = state.cursors || [];
      state.cursors[state.page] = data.next;
      state.cursors.length = state.page + 1; // pages after this one start again from here
    }
    const pages = Math.max(1, Math.ceil(state.total / state.pageSize));
    if (state.cursors && state.page > 1 && state.items.length === 0) {
      state.page -= 1; // its rows went (deleted): show the page before
      await fetchPage(quiet);
      return;
    }
    if (!state.cursors && state.page > pages && state.total > 0) {
      state.page = pages;
      await fetchPage(quiet);
      return;
    }
    const present = new Set(state.items.map(rowKey));
    for (const key of [...state.selected]) if (!present.has(key)) state.selected.delete(key);
    renderRows();
    renderPager();
    pager.hidden = false;
    replace(message, state.items.length ? "" : t(emptyKey));
    message.className = state.items.length ? "table-message" : "table-message table-empty";
    onSelection(selectedItems());
  }

  function go(page) {
    state.page = Math.max(1, page);
    if (state.page === 1) state.cursors = null;
    state.selected.clear();
    return fetchPage(false);
  }

  replace(message, t("table.loading"));

  return {
    el,
    reload: ({ resetPage = false } = {}) => (resetPage ? go(1) : fetchPage(false)),
    refresh: () => fetchPage(true),
    selectedItems,
    clearSelection() {
      state.selected.clear();
      renderRows();
      onSelection([]);
    },
    get total() {
      return state.total;
    },
    get items() {
      return state.items;
    },
  };
}
