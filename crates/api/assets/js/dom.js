// Small DOM helpers. Every text from the API goes in as a text node, never as HTML,
// so a hostile string (a last_error, a customer's memo) cannot run script.

/** h("tr", {class: "x", onclick: fn}, child, "text", [more]) builds an element. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Replaces everything inside `el`. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A table from column specs: [{label, cell: row => node|text, class?}]. */
export function table(columns, rows, {rowAttrs, empty = "nothing here"} = {}) {
  const head = h("thead", {}, h("tr", {}, columns.map((c) => h("th", {class: c.class}, c.label))));
  const body = h("tbody", {});
  if (rows.length === 0) {
    body.appendChild(h("tr", {class: "empty"}, h("td", {colspan: columns.length}, empty)));
  }
  for (const row of rows) body.appendChild(tableRow(columns, row, rowAttrs));
  return h("table", {class: "grid"}, head, body);
}

export function tableRow(columns, row, rowAttrs) {
  return h("tr", rowAttrs ? rowAttrs(row) : {}, columns.map((c) => h("td", {class: c.class}, c.cell(row))));
}

/** A progress bar: done of total, with a label. */
export function progress(done, total, label) {
  const ratio = total > 0 ? Math.min(1, Math.max(0, done / total)) : 0;
  return h(
    "div",
    {class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": total, "aria-valuenow": done},
    h("div", {class: "progress-fill", style: `width:${(ratio * 100).toFixed(1)}%`}),
    h("span", {class: "progress-label"}, label ?? `${done} / ${total}`),
  );
}

/** A pill showing a state name; the class picks its colour. */
export function pill(state) {
  const name = String(state ?? "—");
  return h("span", {class: `pill pill-${name.replace(/[^a-z_]/gi, "")}`}, name.replaceAll("_", " "));
}

/** A button that disables itself while its async action runs. */
export function actionButton(label, action, {kind = "", title} = {}) {
  const button = h("button", {type: "button", class: `btn ${kind}`, title});
  button.textContent = label;
  button.addEventListener("click", async () => {
    button.disabled = true;
    button.classList.add("busy");
    try {
      await action();
    } finally {
      button.disabled = false;
      button.classList.remove("busy");
    }
  });
  return button;
}
