// The salary pipeline for operators: deposits per state (a bar per stage), deposits
// stuck or waiting for an operator with why they are there (who holds them, what
// was done), retry, rollback and resolve-with-a-reason, and the alerts raised.

import {api, approvalNote, awaitingApproval, seg} from "../api.js";
import {actionButton, h, mount, pill, progress, table} from "../dom.js";
import {label, shortId, time, won} from "../format.js";

/** The pipeline's states in the order a deposit passes them. */
const ORDER = ["detected", "computed", "repaid", "suspended", "paid_out", "completed", "waiting", "rolling_back", "rolled_back", "resolved"];

/** [[state, count]] in pipeline order, from `per_state: [{state, count}]`. */
function perState(items) {
  const rank = (s) => (ORDER.indexOf(s) < 0 ? ORDER.length : ORDER.indexOf(s));
  return (items ?? []).map((p) => [String(p.state), Number(p.count)]).sort((a, b) => rank(a[0]) - rank(b[0]));
}

export async function render(el, {notify}) {
  const [status, alertsAnswer, waitingAnswer] = await Promise.all([
    api.get("/v1/payroll/status"),
    api.get("/v1/alerts").catch(() => null),
    api.get("/v1/payroll/deposits?state=waiting&limit=100"),
  ]);
  const counts = perState(status.per_state);
  const total = counts.reduce((s, [, c]) => s + c, 0);
  // Deposits waiting for an operator, then any other deposit the status calls stuck
  // (untouched for long), each once.
  const stuck = [...(waitingAnswer.items ?? [])];
  for (const deposit of status.stuck ?? []) {
    if (!stuck.some((d) => d.deposit_id === deposit.deposit_id)) stuck.push(deposit);
  }
  // The status carries only the newest alerts; the alert list has them all.
  const alerts = alertsAnswer?.items ?? status.alerts ?? [];

  const act = (deposit, verb, body) => async () => {
    try {
      const answer = await api.post(`/v1/payroll/deposits/${seg(deposit.deposit_id)}/${verb}`, body);
      if (awaitingApproval(answer)) return notify(approvalNote(`${verb} ${deposit.deposit_id}`, answer), {ok: true});
      // The answer is the deposit as it now stands.
      notify(`${verb} ${deposit.deposit_id}: now ${label(answer.state)}`, {ok: true});
      await render(el, {notify});
    } catch (err) {
      notify(err);
    }
  };

  // Why a deposit is where it is: the server's sentence, then its claims and the
  // operator actions taken on it.
  const why = (deposit) => async () => {
    try {
      const detail = await api.get(`/v1/payroll/deposits/${seg(deposit.deposit_id)}`);
      const held = (detail.claims ?? []).filter((c) => c.expires_at_ms > 0).map((c) => `${c.stage} by ${c.owner}`);
      const done = (detail.actions ?? []).map((a) => `${a.action} by ${a.actor}${a.reason ? ` (${a.reason})` : ""}`);
      notify(`${deposit.deposit_id}: ${detail.why}${held.length ? `; held: ${held.join(", ")}` : ""}${done.length ? `; actions: ${done.join(", ")}` : ""}`, {ok: true});
    } catch (err) {
      notify(err);
    }
  };
  const resolve = (deposit) => async () => {
    const reason = window.prompt(`Resolve ${deposit.deposit_id} by hand: why? (recorded)`);
    if (!reason || !reason.trim()) return;
    await act(deposit, "resolve", {reason: reason.trim()})();
  };

  mount(
    el,
    h("h1", {}, "Payroll"),
    h(
      "div",
      {class: "cards"},
      stat("users enrolled", String(status.users ?? "—")),
      stat("deposits", String(total)),
      stat("waiting or stuck", String(stuck.length)),
      stat("alerts", String(status.alerts_count ?? alerts.length)),
    ),
    h(
      "div",
      {class: "card", id: "payroll-stages"},
      h("h2", {}, "Deposits per stage"),
      total === 0 ? h("p", {class: "muted"}, "no deposits detected yet") : pipeline(counts, total),
    ),
    h(
      "div",
      {class: "card", id: "payroll-stuck"},
      h("h2", {}, "Waiting for an operator, or stuck"),
      table(
        [
          {label: "deposit", cell: (d) => h("span", {class: "mono", title: d.deposit_id}, shortId(d.deposit_id))},
          {label: "user", cell: (d) => d.user_id},
          {label: "amount", class: "num", cell: (d) => won(d.amount_krw)},
          {label: "state", cell: (d) => pill(d.state)},
          {label: "waiting at", cell: (d) => (d.waiting_stage ? [label(d.waiting_stage), " ", pill(d.waiting_reason ?? "waiting")] : "—")},
          {label: "detected (KST)", class: "nowrap", cell: (d) => time(d.detected_at_ms)},
          {
            label: "",
            cell: (d) =>
              h(
                "div",
                {class: "row"},
                actionButton("Why?", why(d), {kind: "small"}),
                actionButton("Retry", act(d, "retry"), {kind: "small"}),
                actionButton("Roll back", act(d, "rollback"), {kind: "small danger"}),
                actionButton("Resolve…", resolve(d), {kind: "small danger"}),
              ),
          },
        ],
        stuck,
        {empty: "nothing stuck"},
      ),
    ),
    h(
      "div",
      {class: "card", id: "payroll-alerts"},
      h("h2", {}, "Alerts"),
      table(
        [
          {label: "raised (KST)", class: "nowrap", cell: (a) => time(a.created_at_ms)},
          {label: "deposit", cell: (a) => h("span", {class: "mono", title: a.deposit_id}, shortId(a.deposit_id))},
          {label: "stage", cell: (a) => label(a.stage)},
          {label: "reason", cell: (a) => pill(a.reason)},
          {label: "next step", cell: (a) => label(a.next_step)},
          {label: "message", cell: (a) => a.message},
          {label: "webhook", cell: (a) => (a.delivered_at_ms ? pill("delivered") : pill("waiting"))},
        ],
        alerts,
        {empty: "no alerts"},
      ),
    ),
  );
  return null;
}

/** The stages in flow order as boxes joined by arrows, then the two side exits. */
function pipeline(counts, total) {
  const count = Object.fromEntries(counts);
  const box = (state) =>
    h(
      "div",
      {class: `flow-box flow-${state}`, "data-state": state},
      h("div", {class: "flow-name"}, label(state)),
      h("div", {class: "flow-count"}, String(count[state] ?? 0)),
      progress(count[state] ?? 0, total, `${Math.round(((count[state] ?? 0) / total) * 100)}%`),
    );
  const flow = ORDER.slice(0, 6).flatMap((state, i) => (i === 0 ? [box(state)] : [h("span", {class: "flow-arrow"}, "→"), box(state)]));
  const exits = ORDER.slice(6).map(box);
  const others = counts.filter(([state]) => !ORDER.includes(state)).map(([state]) => box(state));
  return [h("div", {class: "flow"}, flow), h("div", {class: "flow exits"}, h("span", {class: "muted"}, "stopped:"), exits, others)];
}

function stat(caption, value) {
  return h("div", {class: "card stat"}, h("div", {class: "caption"}, caption), h("div", {class: "value"}, value));
}
