// A registry's retention (issue 14, point 3): the policy editor (rules with image and tag
// patterns and exclusions, what each keeps, untagged manifests, immutable tags, a schedule),
// a dry run that shows the plan as a preview table (every manifest with its tags, verdict and
// the rule that decided it), and the apply button under the preview; then what apply did, and
// the registry's last plans. Only owners and admins see the buttons; the server decides.

import { api, registryPath } from "../api.js";
import { h, replace } from "../dom.js";
import { t } from "../i18n.js";
import { button, describeError, fmtTime, pageHeader, shortDigest, toast } from "./common.js";
import { openDialog } from "./dialog.js";
import { rightsIn } from "./rights.js";

const KEEPS = ["latest_pushed", "latest_pulled", "pushed_within", "pulled_within", "always"];
const COUNTED = new Set(["latest_pushed", "latest_pulled"]);
const DAYS = new Set(["pushed_within", "pulled_within"]);
const enc = encodeURIComponent;

export function retentionHref(registry) {
  return `#/registries/${enc(registry)}/retention`;
}

const splitPatterns = (text) =>
  text
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean);

function ruleEditor(rule, onRemove) {
  const input = (name, value, placeholder) =>
    h("input", { type: "text", class: "input", value: (value || []).join(", "), placeholder, dataset: { field: name } });
  const images = input("images", rule.images, "*");
  const excludeImages = input("exclude_images", rule.exclude_images, "");
  const tags = input("tags", rule.tags, "*");
  const excludeTags = input("exclude_tags", rule.exclude_tags, "");
  const keep = h(
    "select",
    { class: "input", dataset: { field: "keep" } },
    KEEPS.map((k) => h("option", { value: k, selected: k === rule.keep }, t(`retention.keep.${k}`))),
  );
  const number = h("input", {
    type: "number",
    class: "input input-narrow",
    min: "1",
    value: String(rule.count || rule.days || 10),
    dataset: { field: "number" },
  });
  const unit = h("span", { class: "muted small" });
  const sync = () => {
    number.hidden = keep.value === "always";
    replace(unit, COUNTED.has(keep.value) ? t("retention.unit.tags") : DAYS.has(keep.value) ? t("retention.unit.days") : "");
  };
  keep.addEventListener("change", sync);
  sync();
  const el = h(
    "div",
    { class: "retention-rule", dataset: { testid: "retention-rule" } },
    h("label", { class: "rule-part" }, h("span", { class: "muted small" }, t("retention.images")), images),
    h("label", { class: "rule-part" }, h("span", { class: "muted small" }, t("retention.excludeImages")), excludeImages),
    h("label", { class: "rule-part" }, h("span", { class: "muted small" }, t("retention.tags")), tags),
    h("label", { class: "rule-part" }, h("span", { class: "muted small" }, t("retention.excludeTags")), excludeTags),
    h("label", { class: "rule-part" }, h("span", { class: "muted small" }, t("retention.keep")), h("span", { class: "rule-keep" }, keep, number, unit)),
    button("action.delete", () => onRemove(el), { kind: "link-danger", dataset: { op: "remove-rule" } }),
  );
  el.read = () => {
    const value = {
      images: splitPatterns(images.value),
      exclude_images: splitPatterns(excludeImages.value),
      tags: splitPatterns(tags.value),
      exclude_tags: splitPatterns(excludeTags.value),
      keep: keep.value,
    };
    if (!value.images.length) delete value.images;
    if (!value.tags.length) delete value.tags;
    const n = Number(number.value);
    if (COUNTED.has(keep.value)) value.count = n;
    if (DAYS.has(keep.value)) value.days = n;
    return value;
  };
  return el;
}

function verdictBadge(verdict) {
  return h("span", { class: ["badge", verdict === "keep" ? "badge-ok" : "badge-danger"], dataset: { testid: "verdict" } }, t(`retention.verdict.${verdict}`));
}

function reasonText(reason, rule) {
  return reason === "rule" ? t("retention.reason.rule", { n: rule }) : t(`retention.reason.${reason}`);
}

/** The plan as a table: each manifest, then the tags that point at it (shown together). */
function planTable(plan) {
  const rows = [];
  for (const item of plan.items) {
    rows.push(
      h(
        "tr",
        { class: "plan-manifest", dataset: { digest: item.digest } },
        h("td", {}, h("span", { class: "strong" }, item.image)),
        h("td", {}, h("code", { class: "mono small", title: item.digest }, shortDigest(item.digest))),
        h("td", { class: "muted" }, item.tags.length ? t("retention.manifestWithTags", { n: item.tags.length }) : t("retention.untagged")),
        h("td", {}, verdictBadge(item.verdict)),
        h("td", { class: "small" }, reasonText(item.reason)),
        h("td", { class: "small", dataset: { testid: "outcome" } }, item.outcome ? t(`retention.outcome.${item.outcome}`) : ""),
      ),
    );
    for (const tag of item.tags) {
      rows.push(
        h(
          "tr",
          { class: "plan-tag", dataset: { tag: tag.name, testid: "plan-tag" } },
          h("td", {}),
          h("td", {}),
          h("td", {}, h("span", { class: "tag-name" }, tag.name), h("div", { class: "muted small" }, fmtTime(tag.pushed_at))),
          h("td", {}, verdictBadge(tag.verdict)),
          h("td", { class: "small" }, reasonText(tag.reason, tag.rule)),
          h("td", { class: "small", dataset: { testid: "outcome" } }, tag.outcome ? t(`retention.outcome.${tag.outcome}`) : ""),
        ),
      );
    }
  }
  const head = ["col.image", "col.digest", "retention.tag", "retention.verdict", "retention.reason", "retention.outcome"];
  return h(
    "div",
    { class: "table-wrap", dataset: { testid: "plan-table" } },
    h(
      "div",
      { class: "table-scroll" },
      h("table", { class: "data" }, h("thead", {}, h("tr", {}, head.map((key) => h("th", {}, t(key))))), h("tbody", {}, rows)),
    ),
  );
}

function planSummary(plan) {
  const s = plan.summary;
  const lines = [
    h(
      "div",
      { dataset: { testid: "plan-summary" } },
      t("retention.summary", { id: plan.id, tagsDeleted: s.tags_deleted, tagsKept: s.tags_kept, manifestsDeleted: s.manifests_deleted, manifestsKept: s.manifests_kept }),
    ),
  ];
  if (plan.result) {
    lines.push(
      h(
        "div",
        { class: "notice", dataset: { testid: "plan-result" } },
        t("retention.applied", { tags: plan.result.tags_deleted, manifests: plan.result.manifests_deleted, kept: plan.result.kept.length }),
      ),
    );
  }
  return lines;
}

export function retentionView(ctx, { registry }) {
  const base = `${registryPath(registry)}/retention`;
  const rulesBox = h("div", { class: "retention-rules", dataset: { testid: "retention-rules" } });
  const untagged = h("input", { type: "checkbox", dataset: { testid: "delete-untagged" } });
  const immutable = h("input", { type: "checkbox", dataset: { testid: "include-immutable" } });
  const scheduleKind = h(
    "select",
    { class: "input", dataset: { testid: "schedule-kind" } },
    ["none", "daily", "hours"].map((k) => h("option", { value: k }, t(`retention.schedule.${k}`))),
  );
  const scheduleValue = h("input", { type: "text", class: "input input-narrow", dataset: { testid: "schedule-value" } });
  const syncSchedule = () => {
    scheduleValue.hidden = scheduleKind.value === "none";
    scheduleValue.placeholder = scheduleKind.value === "daily" ? "03:00" : "24";
  };
  scheduleKind.addEventListener("change", syncSchedule);
  const error = h("div", { class: "form-error", role: "alert", dataset: { testid: "retention-error" } });
  const planBox = h("div", { class: "plan-box", dataset: { testid: "plan-box" } });
  const plansBox = h("div", { class: "plans-box" });
  const meta = h("p", { class: "muted small" });
  let manage = false;

  const removeRule = (el) => el.remove();
  const addRule = (rule = { keep: "latest_pushed", count: 10 }) => rulesBox.append(ruleEditor(rule, removeRule));

  function readPolicy() {
    let schedule = null;
    if (scheduleKind.value === "daily") schedule = { daily_at: scheduleValue.value.trim() };
    if (scheduleKind.value === "hours") schedule = { every_hours: Number(scheduleValue.value) };
    return {
      rules: [...rulesBox.children].map((el) => el.read()),
      delete_untagged: untagged.checked,
      include_immutable: immutable.checked,
      schedule,
    };
  }

  function showPolicy(policy) {
    replace(rulesBox);
    policy.rules.forEach((rule) => addRule(rule));
    untagged.checked = policy.delete_untagged;
    immutable.checked = policy.include_immutable;
    const s = policy.schedule;
    scheduleKind.value = s ? (s.daily_at ? "daily" : "hours") : "none";
    scheduleValue.value = s ? String(s.daily_at || s.every_hours) : "";
    syncSchedule();
    replace(meta, policy.updated_at ? t("retention.updated", { who: policy.updated_by || "-", when: fmtTime(policy.updated_at) }) : t("retention.notSet"));
  }

  async function save() {
    replace(error);
    try {
      const { data } = await api.put(base, readPolicy());
      showPolicy(data);
      toast(t("retention.saved"));
      return true;
    } catch (e) {
      replace(error, describeError(e));
      return false;
    }
  }

  function showPlan(plan) {
    const applyButton =
      manage && plan.status === "planned"
        ? button("retention.apply", () => confirmApply(plan), { kind: "danger", dataset: { testid: "apply-plan" } })
        : null;
    replace(planBox, h("h2", { class: "section-title" }, t("retention.preview")), planSummary(plan), planTable(plan), h("div", { class: "actions" }, applyButton));
  }

  async function dryRun() {
    if (!(await save())) return;
    try {
      const { data } = await api.post(`${base}/plans`);
      showPlan(data);
      loadPlans();
    } catch (e) {
      replace(error, describeError(e));
    }
  }

  function confirmApply(plan) {
    openDialog({
      title: t("retention.applyTitle", { id: plan.id }),
      body: h("p", {}, t("retention.applyBody", { tags: plan.summary.tags_deleted, manifests: plan.summary.manifests_deleted })),
      confirmKey: "retention.apply",
      confirmKind: "danger",
      testid: "apply-dialog",
      onConfirm: async () => {
        const { data } = await api.post(`${base}/plans/${plan.id}:apply`);
        showPlan(data);
        loadPlans();
        toast(t("retention.appliedToast", { id: plan.id }));
      },
    });
  }

  async function loadPlans() {
    try {
      const plans = await api.get(`${base}/plans`);
      replace(
        plansBox,
        h("h2", { class: "section-title" }, t("retention.plans")),
        plans.items.length
          ? h(
              "ul",
              { class: "plan-list", dataset: { testid: "plan-list" } },
              plans.items.map((p) =>
                h(
                  "li",
                  {},
                  button("retention.open", async () => showPlan(await api.get(`${base}/plans/${p.id}`)), { kind: "link" }),
                  ` #${p.id} · ${fmtTime(p.created_at)} · ${t(`retention.trigger.${p.trigger}`)} · ${t(`retention.status.${p.status}`)}`,
                ),
              ),
            )
          : h("p", { class: "muted" }, t("retention.noPlans")),
      );
    } catch (e) {
      replace(plansBox, h("div", { class: "notice notice-error" }, describeError(e)));
    }
  }

  const actions = h("div", { class: "actions" });
  const el = h(
    "section",
    { class: "page", dataset: { testid: "page-retention" } },
    pageHeader(t("retention.title", { name: registry }), [
      [t("nav.registries"), "#/registries"],
      [registry, `#/registries/${enc(registry)}/images`],
      [t("retention.crumb"), null],
    ]),
    h("p", { class: "page-intro" }, t("retention.intro")),
    meta,
    h("h2", { class: "section-title" }, t("retention.rules")),
    rulesBox,
    h(
      "div",
      { class: "retention-options" },
      h("label", { class: "check" }, untagged, " ", t("retention.deleteUntagged")),
      h("label", { class: "check" }, immutable, " ", t("retention.includeImmutable")),
      h("label", { class: "check" }, t("retention.schedule"), " ", scheduleKind, " ", scheduleValue),
    ),
    error,
    actions,
    planBox,
    plansBox,
  );

  (async () => {
    try {
      const [policy, r] = await Promise.all([api.get(base), api.get(registryPath(registry))]);
      manage = rightsIn(r).manage;
      showPolicy(policy);
      if (manage) {
        replace(
          actions,
          button("retention.addRule", () => addRule(), { dataset: { testid: "add-rule" } }),
          button("retention.save", () => save(), { dataset: { testid: "save-policy" } }),
          button("retention.dryRun", () => dryRun(), { kind: "primary", dataset: { testid: "dry-run" } }),
        );
      }
      loadPlans();
    } catch (e) {
      replace(error, describeError(e));
    }
  })();
  return { el };
}
