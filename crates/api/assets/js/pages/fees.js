// Fee days for operators: a chart of what was settled per day and fee kind, the
// chosen day's four modules (record → pay → verify → withdraw) with their state,
// progress and a button to run each, amounts per kind, and the reconciliation of
// the ledger against the bank's statement.

import {api, approvalNote, awaitingApproval, seg} from "../api.js";
import {legend, kindColour, stackedBars} from "../chart.js";
import {actionButton, h, mount, pill, progress, table} from "../dom.js";
import {label, time, won} from "../format.js";

const KINDS = ["tax", "platform_fee", "early_repayment_fee", "deferred_fee", "upfront_fee", "withdrawal_fee"];
const MODULES = ["record", "pay", "verify", "withdraw"];
/** Days the chart and the list show. */
const DAYS_SHOWN = 30;

/** Days the chart draws: each bar costs one reconciliation report. */
const CHART_DAYS = 14;

const num = (v) => Number(v ?? 0);

/** {tax: n, …}: what the ledger settled per kind, from a day's report. */
function settledPerKind(report) {
  return Object.fromEntries((report?.kinds ?? []).map((line) => [line.kind, num(line.ledger_krw)]));
}

export async function render(el, {notify}) {
  // Newest first from the API; the chart and the list want oldest first.
  const days = ((await api.get(`/v1/fees/days?limit=${DAYS_SHOWN}`)).items ?? []).slice();
  days.sort((a, b) => String(a.day).localeCompare(String(b.day)));
  let chosen = location.hash.split("/")[1] ?? days.at(-1)?.day ?? null;

  const detail = h("div", {id: "fee-day"});
  const list = h("ul", {class: "days", id: "fee-days"});
  const chartBox = h("div", {class: "card", id: "fee-chart"}, h("h2", {}, "Settled per day and fee kind"), h("p", {class: "muted"}, "loading…"));

  mount(el, h("h1", {}, "Fee days"), h("div", {class: "two"}, chartBox, h("div", {class: "card"}, h("h2", {}, "Days"), list)), detail);

  function drawList() {
    mount(
      list,
      days.length === 0 ? h("li", {class: "muted"}, "no recorded days yet") : null,
      days
        .slice()
        .reverse()
        .map((d) =>
          h(
            "li",
            {},
            h(
              "a",
              {href: `#fees/${d.day}`, class: d.day === chosen ? "active" : "", onclick: (e) => (e.preventDefault(), choose(d.day))},
              h("span", {}, d.day),
              h("span", {class: "row"}, h("span", {class: "num muted"}, won(d.paid_krw ?? d.total_krw)), pill(d.state)),
            ),
          ),
        ),
    );
  }

  async function drawChart() {
    const recent = days.slice(-CHART_DAYS);
    try {
      const reports = await Promise.all(recent.map((d) => api.get(`/v1/fees/days/${seg(d.day)}/report`)));
      const series = recent.map((d, i) => ({day: String(d.day), perKind: settledPerKind(reports[i])}));
      const shown = KINDS.filter((k) => series.some((s) => s.perKind[k] > 0));
      const kinds = shown.length ? shown : KINDS;
      mount(chartBox, h("h2", {}, "Settled per day and fee kind"), stackedBars(series, kinds, {onPick: (day) => choose(day)}), legend(kinds));
    } catch (err) {
      mount(chartBox, h("h2", {}, "Settled per day and fee kind"), h("p", {class: "error"}, h("code", {}, err.code ?? "error"), " ", err.message));
    }
  }

  async function choose(day) {
    chosen = day;
    history.replaceState(null, "", `#fees/${day}`);
    drawList();
    try {
      await showDay(detail, day, notify, async (changed) => {
        const entry = days.find((d) => d.day === changed.day);
        if (entry) Object.assign(entry, {state: changed.state, paid_krw: changed.paid_krw});
        drawList();
      });
    } catch (err) {
      notify(err);
    }
  }

  drawList();
  await Promise.all([drawChart(), chosen ? choose(chosen) : null]);
  return null;
}

/** Each module's state, read off the day's status. */
function stageStates(status) {
  const items = num(status.items);
  const paid = num(status.items_paid);
  const blocked = num(status.items_blocked);
  const chunks = status.chunks ?? {};
  const verified = status.state === "verified" || status.state === "withdrawn";
  let pay = "waiting";
  if (items > 0 && paid + blocked >= items) pay = blocked > 0 ? "blocked" : "done";
  else if (num(chunks.unknown) + num(chunks.sent) > 0) pay = "unknown";
  else if (paid > 0) pay = "partial";
  return {
    record: "done",
    pay,
    verify: verified ? "done" : "waiting",
    withdraw: status.state === "withdrawn" ? "done" : "waiting",
  };
}

function stageProgress(module, status) {
  const chunks = status.chunks ?? {};
  const chunkTotal = Object.values(chunks).reduce((s, v) => s + num(v), 0);
  switch (module) {
    case "record":
      return [progress(num(status.items), num(status.items), `${num(status.items)} items · ${won(status.total_krw)}`)];
    case "pay":
      return [
        progress(num(status.items_paid), num(status.items), `${num(status.items_paid)} / ${num(status.items)} items paid`),
        progress(num(chunks.succeeded), chunkTotal, `${num(chunks.succeeded)} / ${chunkTotal} chunks confirmed`),
      ];
    case "verify": {
      const settled = num(chunks.succeeded) + num(chunks.failed);
      return [progress(settled, chunkTotal, `${settled} / ${chunkTotal} chunks settled`)];
    }
    case "withdraw":
      return [progress(num(status.withdrawn_krw), num(status.paid_krw), `${won(status.withdrawn_krw)} of ${won(status.paid_krw)}`)];
    default:
      return [];
  }
}

async function showDay(box, day, notify, onChange) {
  const answer = await api.get(`/v1/fees/days/${seg(day)}`);
  const status = answer.status ?? answer;
  const runs = answer.runs ?? [];
  const states = stageStates(status);
  const lastRun = (module) => runs.find((r) => r.module === module);

  const stageCards = MODULES.map((module) => {
    const run = lastRun(module);
    return h(
      "div",
      {class: "card stage", "data-module": module, "data-state": states[module]},
      h("div", {class: "spread"}, h("h2", {}, label(module)), pill(states[module])),
      stageProgress(module, status),
      h(
        "div",
        {class: "meta"},
        run ? [`last run: `, pill(run.outcome), ` by ${run.trigger} · ${time(run.finished_at_ms ?? run.started_at_ms)}`] : "not run yet",
      ),
      actionButton(
        `Run ${module}`,
        async () => {
          try {
            const report = await api.post(`/v1/fees/days/${seg(day)}/${module}`);
            if (awaitingApproval(report)) return notify(approvalNote(`${module} ${day}`, report), {ok: true});
            const counts = Object.entries(report?.counts ?? {})
              .filter(([, v]) => v !== 0)
              .map(([k, v]) => (k.endsWith("_krw") ? `${label(k.slice(0, -4))} ${won(v)}` : `${label(k)} ${v}`))
              .join(", ");
            notify(`${module} ${day}: ${label(report?.outcome ?? "done")}${report?.detail ? ` (${report.detail})` : ""}${counts ? ` · ${counts}` : ""}`, {ok: true});
            onChange(await showDay(box, day, notify, onChange));
          } catch (err) {
            notify(err);
          }
        },
        {kind: "primary"},
      ),
    );
  });

  const kindsBox = h("div", {id: "fee-kinds"}, h("p", {class: "muted"}, "loading…"));
  const reportBox = h("div", {id: "fee-report"}, h("p", {class: "muted"}, "loading…"));
  const reconcile = async () => {
    try {
      const report = await api.get(`/v1/fees/days/${seg(day)}/report`);
      mount(kindsBox, kindTable(report.kinds ?? []));
      mount(reportBox, reportView(report));
    } catch (err) {
      const text = [h("code", {}, err.code ?? "error"), " ", err.message];
      mount(kindsBox, h("p", {class: "error"}, text));
      mount(reportBox, h("p", {class: "error"}, text));
    }
  };
  const reportButton = actionButton("Reconcile again", reconcile);
  reportButton.id = "fee-report-button";

  const blocked = status.blocked ?? [];
  mount(
    box,
    h("div", {class: "spread"}, h("h2", {}, `Day ${day}`), h("div", {class: "row", "data-testid": "day-state"}, "day state ", pill(status.state))),
    h(
      "div",
      {class: "cards"},
      statCard("items", String(num(status.items))),
      statCard("recorded", won(status.total_krw)),
      statCard("paid to settlement", won(status.paid_krw)),
      statCard("withdrawn", won(status.withdrawn_krw)),
    ),
    h("div", {class: "stages", id: "fee-stages"}, stageCards),
    h(
      "div",
      {class: "two"},
      h("div", {class: "card"}, h("h2", {}, "Amounts per kind"), kindsBox),
      h("div", {class: "card"}, h("div", {class: "spread"}, h("h2", {}, "Reconciliation with the bank"), reportButton), reportBox),
    ),
    blocked.length
      ? h(
          "div",
          {class: "card"},
          h("h2", {}, "Blocked items (an operator must look)"),
          table(
            [
              {label: "loan", cell: (b) => b.loan_id},
              {label: "kind", cell: (b) => label(b.kind)},
              {label: "unpaid", class: "num", cell: (b) => won(b.unpaid_krw)},
              {label: "reason", cell: (b) => b.reason},
            ],
            blocked,
          ),
        )
      : null,
  );
  await reconcile();
  return status;
}

function kindTable(lines) {
  return table(
    [
      {label: "fee kind", cell: (r) => [h("span", {class: "swatch", style: `background:${kindColour(r.kind)}`}), label(r.kind)]},
      {label: "recorded", class: "num", cell: (r) => won(r.recorded_krw)},
      {label: "settled (ledger)", class: "num", cell: (r) => won(r.ledger_krw)},
      {label: "at the bank", class: "num", cell: (r) => won(r.bank_krw)},
    ],
    lines,
    {empty: "no amounts for this day"},
  );
}

function statCard(caption, value) {
  return h("div", {class: "card stat"}, h("div", {class: "caption"}, caption), h("div", {class: "value"}, value));
}

function reportView(report) {
  const lines = report.kinds ?? [];
  const off = lines.filter((l) => !l.agrees);
  return [
    h("p", {"data-testid": "report-verdict"}, pill(report.agrees ? "ok" : "bad"), report.agrees ? " the ledger and the bank statement agree" : " the ledger and the bank statement disagree"),
    table(
      [
        {label: "", cell: (r) => r.what},
        {label: "ledger", class: "num", cell: (r) => won(r.ledger)},
        {label: "bank", class: "num", cell: (r) => won(r.bank)},
        {label: "", cell: (r) => pill(num(r.ledger) === num(r.bank) ? "ok" : "bad")},
      ],
      [
        {what: "paid to settlement", ledger: report.ledger_paid_krw, bank: report.bank_paid_krw},
        {what: "withdrawn to corporate", ledger: report.ledger_withdrawn_krw, bank: report.bank_withdrawn_krw},
      ],
    ),
    off.length ? h("p", {class: "error"}, `kinds that disagree: ${off.map((l) => label(l.kind)).join(", ")}`) : null,
    h("p", {class: "muted"}, `${(report.duplicates ?? []).length} duplicate bank ids · ${(report.unaccounted ?? []).length} unaccounted movements`),
    (report.duplicates ?? []).length ? h("p", {class: "error"}, `duplicates: ${report.duplicates.join(", ")}`) : null,
    (report.unaccounted ?? []).length ? h("p", {class: "error"}, `unaccounted: ${report.unaccounted.join(", ")}`) : null,
  ];
}
