// Provider migration flags: the share of users routed to the next provider by
// cohort, and per-user overrides that win over the cohort.

import {api, seg} from "../api.js";
import {actionButton, h, mount, progress, table} from "../dom.js";
import {time} from "../format.js";

export async function render(el, {notify}) {
  const flags = await api.get("/v1/providers/flags");
  const providers = flags.providers ?? ["legacy", "next"];
  const percent = Number(flags.cohort_percent ?? 0);
  const overrides = flags.overrides ?? [];
  const reload = () => render(el, {notify});

  const percentInput = h("input", {type: "number", min: 0, max: 100, step: 1, value: percent, id: "cohort-percent", "aria-label": "cohort percent"});
  const userInput = h("input", {type: "text", placeholder: "user id", id: "override-user", "aria-label": "user id"});
  const providerPick = h("select", {id: "override-provider", "aria-label": "provider"}, providers.map((p) => h("option", {value: p}, p)));

  mount(
    el,
    h("h1", {}, "Provider migration"),
    h(
      "div",
      {class: "card", id: "cohort"},
      h("h2", {}, "Cohort"),
      progress(percent, 100, `${percent}% of users on ${providers.at(-1)}`),
      h(
        "div",
        {class: "row"},
        h("label", {for: "cohort-percent"}, "route to the next provider (%)"),
        percentInput,
        actionButton(
          "Set cohort",
          async () => {
            try {
              await api.post("/v1/providers/cohort", {cohort_percent: Number(percentInput.value)});
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
          {label: "user", cell: (o) => h("span", {class: "mono"}, o.user_id ?? o.user)},
          {label: "provider", cell: (o) => o.provider},
          {label: "set (KST)", cell: (o) => time(o.at_ms ?? o.updated_at_ms)},
          {label: "by", cell: (o) => o.actor ?? "—"},
        ],
        overrides,
        {empty: "no overrides: every user follows the cohort"},
      ),
      h(
        "div",
        {class: "row", style: "margin-top:12px"},
        userInput,
        providerPick,
        actionButton("Set override", async () => {
          const user = userInput.value.trim();
          if (!user) return notify(new Error("enter a user id"));
          try {
            await api.post(`/v1/providers/overrides/${seg(user)}`, {provider: providerPick.value});
            notify(`${user} now routes to ${providerPick.value}`, {ok: true});
            await reload();
          } catch (err) {
            notify(err);
          }
        }),
      ),
    ),
  );
  return null;
}
