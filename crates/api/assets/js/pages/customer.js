// The customer's page: balance, transfers still in flight, a "sync now" button, and
// the account's history with infinite scroll — an IntersectionObserver watches a
// sentinel under the table and loads the next (older) keyset page, `before_seq`,
// when the sentinel comes into view.

import {api, seg} from "../api.js";
import {actionButton, h, mount, pill, table, tableRow} from "../dom.js";
import {shortId, signedWon, time, won} from "../format.js";

/** Rows asked for per history page (the API allows up to 100). */
const PAGE_ROWS = 20;
/** Pages one visit loads at most, so a runaway observer cannot loop forever. */
const PAGES_MAX = 500;

/** One history line of `GET /v1/accounts/{id}/history` as the table shows it. */
function entryView(item) {
  return {
    seq: item.seq,
    transferId: item.transfer_id,
    // Posted change: + in, − out; 0 for a hold placed or released.
    amount: Number(item.amount_krw),
    // Pending change: − a hold placed on this account, + one released.
    held: Number(item.pending_krw ?? 0),
    balance: Number(item.balance_after_krw),
    at: item.at_ms,
  };
}

const HISTORY_COLUMNS = [
  {label: "#", class: "num muted", cell: (e) => e.seq},
  {label: "time (KST)", class: "nowrap", cell: (e) => time(e.at)},
  {label: "transfer", cell: (e) => h("span", {class: "mono", title: e.transferId}, shortId(e.transferId))},
  {
    label: "amount",
    class: "num",
    cell: (e) => {
      // A hold placed or released moves no posted money: say so instead of "0 원".
      if (e.amount === 0 && e.held !== 0) return h("span", {class: "muted"}, `${e.held < 0 ? "held" : "released"} ${won(Math.abs(e.held))}`);
      return h("span", {class: e.amount < 0 ? "neg" : "pos"}, signedWon(e.amount));
    },
  },
  {label: "balance", class: "num", cell: (e) => won(e.balance)},
];

const PENDING_COLUMNS = [
  {label: "transfer", cell: (t) => h("span", {class: "mono", title: t.id}, shortId(t.id))},
  {label: "state", cell: (t) => pill(t.state)},
  {label: "to", cell: (t) => h("span", {class: "mono", title: t.to_account_id}, shortId(t.to_account_id))},
  {label: "amount", class: "num", cell: (t) => won(t.amount_krw)},
  {label: "requested (KST)", class: "nowrap", cell: (t) => time(t.requested_at_ms)},
];

export async function render(el, {me, notify}) {
  const accounts = (await api.get(`/v1/customers/${seg(me.customer_id)}/accounts`)).items ?? [];
  if (accounts.length === 0) {
    mount(el, h("div", {class: "card"}, h("h1", {}, "My account"), h("p", {class: "muted"}, "This customer has no accounts yet.")));
    return null;
  }
  let account = accounts[0].id;
  let stopHistory = null;

  const picker = h(
    "select",
    {id: "account-picker", "aria-label": "account"},
    accounts.map((a) => h("option", {value: a.id}, a.id)),
  );
  const balanceBox = h("div", {class: "cards", id: "balance"});
  const pendingBox = h("div", {id: "pending"});
  const historyBox = h("div", {id: "history"});
  const syncNote = h("span", {class: "muted toast", id: "sync-note"});
  const syncButton = actionButton(
    "Sync now",
    async () => {
      try {
        const report = await api.post(`/v1/accounts/${seg(account)}/history/sync`);
        const synced = report.synced;
        const lastSeq = report.last_seq;
        mount(syncNote, `synced ${synced} new ${synced === 1 ? "entry" : "entries"}; up to #${lastSeq} at ${time(Date.now())}`);
        await showAccount();
      } catch (err) {
        notify(err);
      }
    },
    {kind: "primary"},
  );
  syncButton.id = "sync-now";

  mount(
    el,
    h("div", {class: "spread"}, h("h1", {}, "My account"), h("div", {class: "row"}, picker, syncButton)),
    syncNote,
    balanceBox,
    h("div", {class: "card"}, h("h2", {}, "Transfers in flight"), pendingBox),
    h("div", {class: "card"}, h("h2", {}, "History"), historyBox),
  );

  async function showAccount() {
    if (stopHistory) stopHistory();
    const [balance, pending] = await Promise.all([
      api.get(`/v1/accounts/${seg(account)}/balance`),
      api.get(`/v1/accounts/${seg(account)}/pending`),
    ]);
    mount(
      balanceBox,
      stat("balance", won(balance.balance_krw), "balance"),
      stat("credits posted", won(balance.credits_posted_krw)),
      stat("debits posted", won(balance.debits_posted_krw)),
      stat("pending out", won(balance.debits_pending_krw)),
    );
    mount(pendingBox, table(PENDING_COLUMNS, pending.items ?? [], {empty: "no transfer in flight"}));
    stopHistory = infiniteHistory(historyBox, account, notify);
  }

  picker.addEventListener("change", async () => {
    account = picker.value;
    try {
      await showAccount();
    } catch (err) {
      notify(err);
    }
  });
  await showAccount();
  return () => stopHistory && stopHistory();
}

function stat(caption, value, testid) {
  return h("div", {class: "card stat", "data-testid": testid}, h("div", {class: "caption"}, caption), h("div", {class: "value"}, value));
}

/** Mounts the history table and keeps loading older pages as the end comes into view. */
function infiniteHistory(box, account, notify) {
  const body = table(HISTORY_COLUMNS, [], {empty: "loading…"});
  const tbody = body.querySelector("tbody");
  const sentinel = h("div", {class: "sentinel", id: "history-sentinel"}, "loading…");
  mount(box, body, sentinel);

  let before = null; // null = newest page first
  let pages = 0;
  let done = false;
  let loading = false;
  let stopped = false;

  async function loadNext() {
    if (loading || done || stopped) return;
    loading = true;
    try {
      const query = new URLSearchParams({limit: String(PAGE_ROWS)});
      if (before !== null) query.set("before_seq", String(before));
      const page = await api.get(`/v1/accounts/${seg(account)}/history?${query}`);
      if (stopped) return;
      if (pages === 0) tbody.replaceChildren();
      pages += 1;
      const items = page.items ?? [];
      for (const item of items) {
        tbody.appendChild(tableRow(HISTORY_COLUMNS, entryView(item), (e) => ({"data-seq": e.seq, "data-page": pages})));
      }
      box.dataset.pages = String(pages);
      before = page.next_before_seq ?? null;
      done = before === null || items.length === 0 || pages >= PAGES_MAX;
      if (pages === 1 && items.length === 0) {
        tbody.appendChild(h("tr", {class: "empty"}, h("td", {colspan: HISTORY_COLUMNS.length}, "no entries yet")));
      }
      mount(sentinel, done ? `the first entry · ${tbody.querySelectorAll("tr[data-seq]").length} rows` : `page ${pages} loaded · scroll for older`);
    } catch (err) {
      mount(sentinel, h("span", {class: "error"}, h("code", {}, err.code ?? "error"), " ", err.message));
      notify(err);
      done = true;
    } finally {
      loading = false;
    }
    // A short page or a tall window can leave the sentinel in view: keep going.
    if (!done && !stopped && inView(sentinel)) loadNext();
  }

  const observer = new IntersectionObserver((seen) => {
    if (seen.some((e) => e.isIntersecting)) loadNext();
  }, {rootMargin: "0px 0px 120px 0px"});
  observer.observe(sentinel);
  loadNext();
  return () => {
    stopped = true;
    observer.disconnect();
  };
}

function inView(el) {
  const box = el.getBoundingClientRect();
  return box.top < window.innerHeight + 120 && box.bottom > 0;
}
