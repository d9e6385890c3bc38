// Provider migration flags: the share of users routed to the next provider by
// cohort, per-user overrides that win over the cohort, and the routing table's own
// change log (who changed what, when).

import {api, approvalNote, awaitingApproval, seg} from "../api.js";
import {actionButton, h, mount, progress, table} from "../dom.js";
import {shortId, time} from "../format.js";

const PROVIDERS = ["legacy", "next"];
const USER_PREFIX = "user:";

/** The pins in force, read off the change log (newest first): each user's latest. */
function overridesFrom(changes) {
  const latest = new Map();
  for (const change of changes) {
    if (!String(change.subject).startsWith(USER_PREFIX)) continue;
    const user = change.subject.slice(USER_PREFIX.length);
    if (!latest.has(user)) latest.set(user, change);
  }
  return [...latest.entries()].filter(([, c]) => c.new_value).map(([user, c]) => ({user, provider: c.new_value, at_ms: c.at_ms, actor: c.actor}));
}

export async function render(el, {notify}) {
  const flags = await api.get("/v1/providers/flags");
  const percent = Number(flags.cohort_percent ?? 0);
  const changes = flags.changes ?? [];
  const overrides = overridesFrom(changes);
  const reload = () => render(el, {notify});
  const pin = async (user, provider) => {
    try {
      const answer = await api.post(`/v1/providers/overrides/${seg(user)}`, {provider});
      if (awaitingApproval(answer)) return notify(approvalNote(`pinning ${user}`, answer), {ok: true});
      notify(provider ? `${user} now routes to ${provider}` : `${user} follows the cohort again`, {ok: true});
      await reload();
    } catch (err) {
      notify(err);
    }
  };

  const percentInput = h("input", {type: "number", min: 0, max: 100, step: 1, value: percent, id: "cohort-percent", "aria-label": "cohort percent"});
  const userInput = h("input", {type: "text", placeholder: "user id (UUID)", id: "override-user", "aria-label": "user id", size: 38});
  const providerPick = h("select", {id: "override-provider", "aria-label": "provider"}, PROVIDERS.map((p) => h("option", {value: p}, p)));

  mount(
    el,
    h("h1", {}, "Provider migration"),
    h(
      "div",
      {class: "card", id: "cohort"},
      h("h2", {}, "Cohort"),
      progress(percent, 100, `${percent}% of users on next · ${100 - percent}% on legacy`),
      h(
        "div",
        {class: "row"},
        h("label", {for: "cohort-percent"}, "route to next (%)"),
        percentInput,
        actionButton(
          "Set cohort",
          async () => {
            try {
              const answer = await api.post("/v1/providers/cohort", {percent: Number(percentInput.value)});
              if (awaitingApproval(answer)) {
                el.dataset.approval = answer.approval_id;
                return notify(approvalNote(`the cohort at ${Number(percentInput.value)}%`, answer), {ok: true});
              }
              notify(`cohort set to ${Number(percentInput.value)}%`, {ok: true});
              await reload();
            } catch (err) {
              notify(err);
            }
          },
          {kind: "primary"},
        ),
      ),
    ),
    h(
      "div",
      {class: "card", id: "overrides"},
      h("h2", {}, "Per-user overrides"),
      table(
        [
          {label: "user", cell: (o) => h("span", {class: "mono"}, o.user)},
          {label: "provider", cell: (o) => o.provider},
          {label: "set (KST)", class: "nowrap", cell: (o) => time(o.at_ms)},
          {label: "by", cell: (o) => h("span", {class: "mono"}, o.actor ?? "—")},
          {label: "", cell: (o) => actionButton("Follow cohort", () => pin(o.user, null), {kind: "small"})},
        ],
        overrides,
        {empty: "no overrides: every user follows the cohort"},
      ),
      h("div", {class: "row", style: "margin-top:12px"}, userInput, providerPick, actionButton("Pin user", async () => {
        const user = userInput.value.trim();
        if (!user) return notify(new Error("enter a user id"));
        await pin(user, providerPick.value);
      })),
    ),
    h(
      "div",
      {class: "card", id: "routing-changes"},
      h("h2", {}, "Recent changes"),
      table(
        [
          {label: "#", class: "num muted", cell: (c) => c.seq},
          {label: "when (KST)", class: "nowrap", cell: (c) => time(c.at_ms)},
          {label: "what", cell: (c) => (String(c.subject).startsWith(USER_PREFIX) ? h("span", {class: "mono", title: c.subject}, `user ${shortId(c.subject.slice(USER_PREFIX.length))}`) : c.subject)},
          {label: "from → to", cell: (c) => `${c.old_value ?? "—"} → ${c.new_value ?? "—"}`},
          {label: "by", cell: (c) => h("span", {class: "mono"}, c.actor)},
        ],
        changes,
        {empty: "no changes yet"},
      ),
    ),
  );
  return null;
}
