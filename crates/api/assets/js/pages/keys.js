// API keys for operators: every key (never a key itself) with its role, expiry,
// last use and rotation; create one, revoke one, rotate one. A new or rotated key
// is shown once, here, and never again — the API keeps only its hash.

import {api, approvalNote, awaitingApproval, seg} from "../api.js";
import {actionButton, h, mount, pill, table} from "../dom.js";
import {shortId, time} from "../format.js";

const ROLES = ["service", "customer", "ops"];
const DAY_MS = 24 * 60 * 60 * 1000;

/** A key's standing now: revoked, awaiting approval, expired or live. */
function standing(key, nowMs) {
  if (key.revoked_at_ms !== null && key.revoked_at_ms !== undefined) return "revoked";
  if (key.awaiting_approval) return "awaiting_approval";
  if (key.expires_at_ms !== null && key.expires_at_ms !== undefined && key.expires_at_ms <= nowMs) return "expired";
  return "live";
}

/** The one place a secret is shown: a box that says it will not be shown again. */
function secretBox(what, created) {
  return h(
    "div",
    {class: "card secret", id: "new-key"},
    h("h2", {}, `${what}: copy it now`),
    h("p", {class: "muted"}, "This key is shown once. The server keeps only its hash."),
    h("code", {class: "mono", "data-testid": "new-key"}, created.key),
    h("p", {class: "muted"}, `${created.key_id} · ${created.role}${created.expires_at_ms ? ` · expires ${time(created.expires_at_ms)}` : ""}`),
  );
}

export async function render(el, {notify}, shown = null) {
  const answer = await api.get("/v1/keys?limit=100");
  const keys = answer.items ?? [];
  const nowMs = Date.now();
  const reload = (secret) => render(el, {notify}, secret);

  const revoke = (key) => async () => {
    try {
      await api.post(`/v1/keys/${seg(key.key_id)}/revoke`);
      notify(`revoked ${key.key_id}`, {ok: true});
      await reload(null);
    } catch (err) {
      notify(err);
    }
  };
  const rotate = (key) => async () => {
    try {
      const rotated = await api.post(`/v1/keys/${seg(key.key_id)}/rotate`);
      notify(`rotated ${key.key_id}: the old secret no longer works`, {ok: true});
      await reload(secretBox("New secret", rotated));
    } catch (err) {
      notify(err);
    }
  };

  const role = h("select", {id: "key-role", "aria-label": "role"}, ROLES.map((r) => h("option", {value: r}, r)));
  const customer = h("input", {type: "text", id: "key-customer", placeholder: "customer id (customer keys)", size: 38, "aria-label": "customer id"});
  const days = h("input", {type: "number", id: "key-days", min: 1, max: 3650, step: 1, placeholder: "never", "aria-label": "expires in days"});
  const create = async () => {
    const body = {role: role.value};
    if (role.value === "customer") body.customer_id = customer.value.trim();
    if (days.value) body.expires_at_ms = Date.now() + Number(days.value) * DAY_MS;
    try {
      const created = await api.post("/v1/keys", body);
      if (awaitingApproval(created.approval)) {
        notify(approvalNote(`the new ops key ${created.key_id}`, created.approval), {ok: true});
      } else {
        notify(`created ${created.key_id}`, {ok: true});
      }
      await reload(secretBox("New key", created));
    } catch (err) {
      notify(err);
    }
  };

  mount(
    el,
    h("div", {class: "spread"}, h("h1", {}, "API keys"), h("span", {class: "muted"}, `${keys.length} keys`)),
    shown,
    h(
      "div",
      {class: "card", id: "key-create"},
      h("h2", {}, "Create a key"),
      h("div", {class: "row"}, role, customer, h("label", {for: "key-days"}, "expires in days"), days, actionButton("Create key", create, {kind: "primary"})),
    ),
    h(
      "div",
      {class: "card", id: "keys"},
      table(
        [
          {label: "key", cell: (k) => h("span", {class: "mono", title: k.key_id}, k.key_id)},
          {label: "role", cell: (k) => [k.role, k.grants ? h("span", {class: "muted"}, ` +${k.grants}`) : null]},
          {label: "customer", cell: (k) => (k.customer_id ? h("span", {class: "mono", title: k.customer_id}, shortId(k.customer_id)) : "—")},
          {label: "created (KST)", class: "nowrap", cell: (k) => time(k.created_at_ms)},
          {label: "expires", class: "nowrap", cell: (k) => (k.expires_at_ms ? time(k.expires_at_ms) : "never")},
          {label: "last used", class: "nowrap", cell: (k) => (k.last_used_at_ms ? time(k.last_used_at_ms) : "—")},
          {label: "rotated", class: "nowrap", cell: (k) => (k.rotated_at_ms ? time(k.rotated_at_ms) : "—")},
          {label: "state", cell: (k) => pill(standing(k, nowMs))},
          {
            label: "",
            cell: (k) =>
              standing(k, nowMs) === "revoked"
                ? ""
                : h("div", {class: "row"}, actionButton("Rotate", rotate(k), {kind: "small"}), actionButton("Revoke", revoke(k), {kind: "small danger"})),
          },
        ],
        keys,
        {empty: "no keys", rowAttrs: (k) => ({"data-key": k.key_id, "data-state": standing(k, nowMs)})},
      ),
    ),
  );
  return null;
}
