// Maker-checker for operators: actions another ops key asked for that wait for a
// second key. Approve runs the action once (its outcome shows below); reject needs
// a reason. A key never approves its own request — the API refuses it, and the
// page says so before asking.

import {api, seg} from "../api.js";
import {actionButton, h, mount, pill, table} from "../dom.js";
import {shortId, time} from "../format.js";

/** The API pages at most 100 items. */
const SHOWN = 100;

/** What an approval would do, in a line: its body without the action tag. */
function what(approval) {
  const {action, ...input} = approval.body ?? {};
  const args = Object.entries(input).map(([k, v]) => `${k}: ${v === null ? "—" : v}`);
  return [h("code", {}, approval.action), args.length ? h("span", {class: "muted"}, ` ${args.join(" · ")}`) : null];
}

function outcome(approval) {
  const out = approval.outcome;
  if (!out) return approval.reason ? h("span", {class: "muted"}, approval.reason) : "—";
  if (out.ok) return h("span", {class: "muted"}, "ran");
  return h("span", {class: "error"}, `${out.code}${out.reason ? ` (${out.reason})` : ""}: ${out.message}`);
}

export async function render(el, {me, notify}) {
  const [pendingAnswer, allAnswer] = await Promise.all([api.get(`/v1/approvals?state=pending&limit=${SHOWN}`), api.get(`/v1/approvals?limit=${SHOWN}`)]);
  const pending = (pendingAnswer.items ?? []).filter((a) => !a.expired);
  const decided = (allAnswer.items ?? []).filter((a) => a.state !== "pending" || a.expired);
  const reload = () => render(el, {me, notify});

  const approve = (approval) => async () => {
    try {
      const done = await api.post(`/v1/approvals/${seg(approval.approval_id)}/approve`, {body_hash: approval.body_hash});
      notify(`${approval.action} ${approval.target}: ${done.state}${done.outcome && !done.outcome.ok ? ` (${done.outcome.code})` : ""}`, {ok: done.state === "done"});
      await reload();
    } catch (err) {
      notify(err);
    }
  };
  const reject = (approval, input) => async () => {
    const reason = input.value.trim();
    if (!reason) return notify(new Error("give a reason to reject"));
    try {
      await api.post(`/v1/approvals/${seg(approval.approval_id)}/reject`, {reason});
      notify(`rejected ${approval.action} ${approval.target}`, {ok: true});
      await reload();
    } catch (err) {
      notify(err);
    }
  };

  mount(
    el,
    h("div", {class: "spread"}, h("h1", {}, "Approvals"), h("span", {class: "muted", id: "approvals-count"}, `${pending.length} pending`)),
    h(
      "div",
      {class: "card", id: "approvals-pending"},
      h("h2", {}, "Waiting for a second ops key"),
      table(
        [
          {label: "asked (KST)", class: "nowrap", cell: (a) => time(a.requested_at_ms)},
          {label: "by", cell: (a) => h("span", {class: "mono", title: a.requested_by}, shortId(a.requested_by))},
          {label: "action", cell: what},
          {label: "body hash", cell: (a) => h("span", {class: "mono muted", title: a.body_hash}, a.body_hash.slice(0, 12))},
          {label: "expires (KST)", class: "nowrap", cell: (a) => time(a.expires_at_ms)},
          {
            label: "",
            cell: (a) => {
              if (a.requested_by === me.key_id) return h("span", {class: "muted"}, "yours: another ops key approves");
              const reason = h("input", {type: "text", placeholder: "reason to reject", size: 18, "aria-label": "reason"});
              return h("div", {class: "row"}, actionButton("Approve", approve(a), {kind: "small primary"}), reason, actionButton("Reject", reject(a, reason), {kind: "small danger"}));
            },
          },
        ],
        pending,
        {empty: "nothing waits for approval", rowAttrs: (a) => ({"data-id": a.approval_id, "data-action": a.action})},
      ),
    ),
    h(
      "div",
      {class: "card", id: "approvals-decided"},
      h("h2", {}, "Decided"),
      table(
        [
          {label: "asked (KST)", class: "nowrap", cell: (a) => time(a.requested_at_ms)},
          {label: "action", cell: what},
          {label: "by", cell: (a) => h("span", {class: "mono", title: a.requested_by}, shortId(a.requested_by))},
          {label: "decided by", cell: (a) => (a.decided_by ? h("span", {class: "mono", title: a.decided_by}, shortId(a.decided_by)) : "—")},
          {label: "state", cell: (a) => pill(a.expired ? "expired" : a.state)},
          {label: "outcome", cell: outcome},
        ],
        decided,
        {empty: "none decided yet", rowAttrs: (a) => ({"data-id": a.approval_id, "data-state": a.state})},
      ),
    ),
  );
  return null;
}
