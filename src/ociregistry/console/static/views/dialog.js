// Modal dialogs: a title, a body, an error line and the buttons. `onConfirm` may be async;
// while it runs the confirm button is busy; it closes the dialog unless it returns false.

import { append, h, replace } from "../dom.js";
import { t } from "../i18n.js";
import { describeError } from "./common.js";

let openCount = 0;

export function dialogOpen() {
  return openCount > 0;
}

export function openDialog({
  title,
  body,
  confirmKey = "action.confirm",
  confirmKind = "primary",
  cancelKey = "action.cancel",
  onConfirm,
  confirmDisabled = false,
  wide = false,
  testid,
}) {
  const host = document.getElementById("dialogs") || document.body;
  const error = h("div", { class: "dialog-error", role: "alert" });
  const status = h("div", { class: "dialog-status", "aria-live": "polite" });
  const confirm = onConfirm
    ? h(
        "button",
        {
          type: "submit",
          class: ["btn", `btn-${confirmKind}`],
          disabled: confirmDisabled,
          dataset: { role: "confirm" },
        },
        t(confirmKey),
      )
    : null;
  const cancel = h(
    "button",
    { type: "button", class: "btn btn-default", dataset: { role: "cancel" }, onclick: () => close() },
    t(onConfirm ? cancelKey : "action.close"),
  );
  const titleId = `dlg-${Math.random().toString(36).slice(2, 9)}`;
  const form = h(
    "form",
    {
      class: ["dialog", wide ? "dialog-wide" : null],
      role: "dialog",
      "aria-modal": "true",
      "aria-labelledby": titleId,
      noValidate: true,
      dataset: { testid: testid || "dialog" },
    },
    h(
      "header",
      { class: "dialog-header" },
      h("h2", { id: titleId }, title),
      h(
        "button",
        {
          type: "button",
          class: "btn-icon dialog-x",
          "aria-label": t("action.close"),
          title: t("action.close"),
          onclick: () => close(),
        },
        "×",
      ),
    ),
    h("div", { class: "dialog-body" }, body),
    error,
    h("footer", { class: "dialog-footer" }, status, cancel, confirm),
  );
  const overlay = h("div", { class: "overlay" }, form);
  let closed = false;
  let busy = false;

  const ctrl = {
    el: form,
    confirm,
    cancel,
    close,
    setError(message) {
      replace(error, message || "");
    },
    setStatus(message) {
      replace(status, message || "");
    },
    setBusy(on, labelKey) {
      busy = on;
      if (confirm) {
        confirm.disabled = on || ctrl.blocked;
        confirm.classList.toggle("busy", on);
        replace(confirm, on && labelKey ? t(labelKey) : t(confirmKey));
      }
    },
    blocked: confirmDisabled,
    block(on) {
      ctrl.blocked = on;
      if (confirm && !busy) confirm.disabled = on;
    },
    /** Swap the buttons for a single Close (e.g. to show results). */
    finish() {
      if (confirm) confirm.remove();
      replace(cancel, t("action.close"));
    },
  };

  function close() {
    if (closed) return;
    closed = true;
    openCount -= 1;
    overlay.remove();
    document.removeEventListener("keydown", onKey);
  }

  function onKey(event) {
    if (event.key === "Escape" && !busy) close();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!onConfirm || busy || ctrl.blocked) return;
    ctrl.setError("");
    ctrl.setBusy(true);
    let keep = false;
    try {
      keep = (await onConfirm(ctrl)) === false;
    } catch (err) {
      keep = true;
      ctrl.setError(describeError(err));
    } finally {
      if (!closed) ctrl.setBusy(false);
    }
    if (!keep) close();
  });

  document.addEventListener("keydown", onKey);
  openCount += 1;
  append(host, overlay);
  const first = form.querySelector(".dialog-body input:not([type=checkbox]):not([readonly]), .dialog-body textarea, .dialog-body select");
  (first || confirm || cancel).focus();
  return ctrl;
}
