// Dead letters for operators: events a consumer gave up on after its retries. A
// parked event holds its key's later events, so each one needs a decision: replay
// (deliver it again, once the cause is fixed) or discard.

import {api, seg} from "../api.js";
import {actionButton, h, mount, pill, table} from "../dom.js";
import {time} from "../format.js";

/** The API pages at most 100 items. */
const LETTERS_SHOWN = 100;

export async function render(el, {notify}) {
  const answer = await api.get(`/v1/events/dead-letters?state=parked&limit=${LETTERS_SHOWN}`);
  // Resolved letters stay in the table for the record; only parked ones need a decision.
  const letters = (answer.items ?? []).filter((d) => d.state === "parked");

  const act = (letter, verb) => async () => {
    try {
      const result = await api.post(`/v1/events/dead-letters/${seg(letter.id)}/${verb}`);
      notify(`${verb === "replay" ? "replayed" : "discarded"} ${letter.kind ?? "event"} ${letter.key ?? ""}${result?.state ? ` → ${result.state}` : ""}`, {ok: true});
      await render(el, {notify});
    } catch (err) {
      notify(err);
    }
  };

  mount(
    el,
    h("div", {class: "spread"}, h("h1", {}, "Dead letters"), h("span", {class: "muted"}, `${letters.length} parked`)),
    h(
      "div",
      {class: "card", id: "dead-letters"},
      table(
        [
          {label: "parked (KST)", class: "nowrap", cell: (d) => time(d.at_ms)},
          {label: "consumer", cell: (d) => h("code", {}, d.consumer)},
          {label: "event", cell: (d) => [h("code", {}, d.kind), " ", h("span", {class: "mono muted"}, `${d.key}#${d.seq}`)]},
          {label: "attempts", class: "num", cell: (d) => d.attempts},
          {label: "last error", cell: (d) => h("span", {class: "error"}, d.last_error)},
          {label: "state", cell: (d) => pill(d.state)},
          {
            label: "",
            cell: (d) => h("div", {class: "row"}, actionButton("Replay", act(d, "replay"), {kind: "small primary"}), actionButton("Discard", act(d, "discard"), {kind: "small danger"})),
          },
        ],
        letters,
        {empty: "no dead letters", rowAttrs: (d) => ({"data-id": d.id})},
      ),
    ),
  );
  return null;
}
