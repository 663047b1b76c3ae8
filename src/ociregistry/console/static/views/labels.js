// The key–value rows of a registry's labels (SPEC §1: at most 20, key 1–128 characters,
// value 0–256), with add and remove buttons.

import { h, replace } from "../dom.js";
import { t } from "../i18n.js";

export const MAX_LABELS = 20;

export function labelEditor(initial = {}) {
  const rows = h("div", { class: "label-rows", dataset: { testid: "label-rows" } });
  const error = h("div", { class: "field-error", role: "alert" });
  const add = h(
    "button",
    { type: "button", class: "btn btn-link", dataset: { testid: "label-add" }, onclick: () => addRow("", "") },
    `+ ${t("labels.add")}`,
  );
  const count = h("span", { class: "field-hint" });

  function sync() {
    const n = rows.children.length;
    add.disabled = n >= MAX_LABELS;
    replace(count, t("labels.count", { n, max: MAX_LABELS }));
  }

  function addRow(key, value) {
    if (rows.children.length >= MAX_LABELS) return;
    const keyInput = h("input", {
      type: "text",
      class: "label-key",
      maxlength: "128",
      placeholder: t("labels.key"),
      "aria-label": t("labels.key"),
      value: key,
    });
    const valueInput = h("input", {
      type: "text",
      class: "label-value",
      maxlength: "256",
      placeholder: t("labels.value"),
      "aria-label": t("labels.value"),
      value,
    });
    const row = h(
      "div",
      { class: "label-row" },
      keyInput,
      valueInput,
      h(
        "button",
        {
          type: "button",
          class: "btn btn-link btn-danger-link",
          onclick: () => {
            row.remove();
            sync();
          },
        },
        t("labels.remove"),
      ),
    );
    rows.append(row);
    sync();
    if (!key) keyInput.focus();
  }

  for (const [key, value] of Object.entries(initial || {})) addRow(key, value);
  sync();

  const el = h("div", { class: "label-editor" }, rows, h("div", { class: "label-tools" }, add, count), error);

  return {
    el,
    setError(message) {
      replace(error, message || "");
      el.classList.toggle("has-error", Boolean(message));
    },
    /** The labels, or throws an Error whose message is already translated. */
    value() {
      const labels = {};
      for (const row of rows.children) {
        const key = row.querySelector(".label-key").value.trim();
        const value = row.querySelector(".label-value").value;
        if (!key && !value) continue;
        if (!key) throw new Error(t("validate.labels.keyRequired"));
        if (key.length > 128) throw new Error(t("validate.labels.keyLong"));
        if (value.length > 256) throw new Error(t("validate.labels.valueLong"));
        if (Object.hasOwn(labels, key)) throw new Error(t("validate.labels.duplicate", { key }));
        labels[key] = value;
      }
      return labels;
    },
  };
}
