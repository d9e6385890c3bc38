// The audit log: every ops action, before it ran and again with its outcome,
// newest first, with "older" paging by before_id; and the hash chain's
// verification (GET /v1/audit/verify), run when the page opens and on demand.

import {api} from "../api.js";
import {actionButton, h, mount, pill, table, tableRow} from "../dom.js";
import {shortId, time} from "../format.js";

const PAGE_ROWS = 50;

const COLUMNS = [
  {label: "#", class: "num muted", cell: (a) => a.id},
  {label: "time (KST)", class: "nowrap", cell: (a) => time(a.at_ms)},
  {label: "key", cell: (a) => h("span", {class: "mono", title: a.key_id}, shortId(a.key_id))},
  {label: "action", cell: (a) => h("code", {}, a.action)},
  {label: "target", cell: (a) => h("span", {class: "mono"}, a.target ?? "—")},
  {label: "outcome", cell: (a) => (a.details?.outcome ? pill(a.details.outcome) : "")},
  {label: "details", cell: (a) => details(a.details)},
];

/** Details as "key: value" pairs; nothing for an empty object. */
function details(value) {
  if (value === null || value === undefined) return "";
  if (typeof value !== "object") return String(value);
  const pairs = Object.entries(value).map(([k, v]) => `${k}: ${v === null ? "—" : typeof v === "object" ? JSON.stringify(v) : v}`);
  return h("span", {class: "muted"}, pairs.join(" · "));
}

export async function render(el, {notify}) {
  const grid = table(COLUMNS, [], {empty: "no actions recorded yet"});
  const body = grid.querySelector("tbody");
  let before = null;
  const more = actionButton("Older", () => load());
  more.id = "audit-more";

  async function load() {
    try {
      const query = new URLSearchParams({limit: String(PAGE_ROWS)});
      if (before !== null) query.set("before_id", String(before));
      const page = await api.get(`/v1/audit?${query}`);
      const items = page.items ?? [];
      if (items.length && body.querySelector("tr.empty")) body.replaceChildren();
      for (const item of items) body.appendChild(tableRow(COLUMNS, item));
      before = page.next_before_id ?? null;
      more.hidden = before === null;
    } catch (err) {
      notify(err);
    }
  }

  const verdict = h("span", {id: "audit-verify", "data-intact": ""}, "checking the chain…");
  async function verify() {
    try {
      const answer = await api.get("/v1/audit/verify");
      verdict.dataset.intact = String(answer.intact);
      mount(
        verdict,
        answer.intact ? pill("ok") : pill("bad"),
        answer.intact ? ` chain intact: ${answer.rows} rows hold` : ` chain broken at row #${answer.broken?.id}: ${answer.broken?.why}`,
      );
    } catch (err) {
      notify(err);
    }
  }

  mount(
    el,
    h("h1", {}, "Audit log"),
    h("div", {class: "card spread", id: "audit-chain"}, verdict, actionButton("Verify chain", verify)),
    h("div", {class: "card", id: "audit"}, grid, more),
  );
  await Promise.all([load(), verify()]);
  return null;
}
