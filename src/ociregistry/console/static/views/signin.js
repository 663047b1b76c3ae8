// Sign in with a username and password; the server sets the session cookie and hands back
// the CSRF token for later changes.

import { signIn } from "../api.js";
import { h, replace } from "../dom.js";
import { t } from "../i18n.js";
import { describeError, field } from "./common.js";

export function signinView(ctx) {
  const username = h("input", { type: "text", autocomplete: "username", name: "username", dataset: { testid: "username" } });
  const password = h("input", {
    type: "password",
    autocomplete: "current-password",
    name: "password",
    dataset: { testid: "password" },
  });
  const fields = {
    username: field("form.username", username, { required: true }),
    password: field("form.password", password, { required: true }),
  };
  const error = h("div", { class: "form-error", role: "alert", dataset: { testid: "signin-error" } });
  const submit = h("button", { type: "submit", class: "btn btn-primary btn-block" }, t("auth.signIn"));
  const form = h(
    "form",
    { class: "signin-card", noValidate: true, dataset: { testid: "signin-form" } },
    h("div", { class: "signin-logo", "aria-hidden": "true" }),
    h("h1", {}, t("auth.signInTitle")),
    h("p", { class: "muted" }, t("auth.signInIntro")),
    fields.username.el,
    fields.password.el,
    error,
    submit,
    h("p", { class: "signin-alt" }, h("a", { href: "#/shared" }, t("auth.browseShared"))),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    replace(error, "");
    fields.username.setError(username.value ? "" : t("validate.required"));
    fields.password.setError(password.value ? "" : t("validate.required"));
    if (!username.value || !password.value) return;
    submit.disabled = true;
    try {
      const session = await signIn(username.value, password.value);
      ctx.signedIn(session);
    } catch (err) {
      replace(error, err.status === 401 ? t("auth.failed") : describeError(err));
      password.select();
    } finally {
      submit.disabled = false;
    }
  });
  queueMicrotask(() => username.focus());
  return { el: h("section", { class: "signin-page", dataset: { testid: "page-signin" } }, form) };
}
