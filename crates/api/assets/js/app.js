// The console's shell: logs in with an API key, asks GET /v1/me which role it has,
// shows that role's pages, and routes between them by the URL's hash.

import {ApiError, api, apiKey, setApiKey} from "./api.js";
import {h, mount} from "./dom.js";
import {shortId} from "./format.js";
import * as approvals from "./pages/approvals.js";
import * as audit from "./pages/audit.js";
import * as customer from "./pages/customer.js";
import * as dlq from "./pages/dlq.js";
import * as fees from "./pages/fees.js";
import * as flags from "./pages/flags.js";
import * as keys from "./pages/keys.js";
import * as payroll from "./pages/payroll.js";

/** Every page: who may see it, and its module (render(el, ctx) -> cleanup?). */
const PAGES = [
  {id: "history", title: "My account", roles: ["customer"], module: customer},
  {id: "fees", title: "Fee days", roles: ["ops"], module: fees},
  {id: "payroll", title: "Payroll", roles: ["ops"], module: payroll},
  {id: "dlq", title: "Dead letters", roles: ["ops"], module: dlq},
  {id: "flags", title: "Providers", roles: ["ops"], module: flags},
  {id: "approvals", title: "Approvals", roles: ["ops"], module: approvals},
  {id: "keys", title: "API keys", roles: ["ops"], module: keys},
  {id: "audit", title: "Audit log", roles: ["ops"], module: audit},
];

const state = {me: null, cleanup: null};
const $ = (id) => document.getElementById(id);

/** Shows an API error (code + message) or a plain note in the banner. */
export function notify(what, {ok = false} = {}) {
  const banner = $("banner");
  banner.classList.toggle("ok", ok);
  if (what instanceof ApiError) {
    mount(banner, h("code", {}, what.code), " ", what.message, what.status ? h("span", {class: "muted"}, ` (HTTP ${what.status})`) : null);
  } else if (what instanceof Error) {
    mount(banner, h("code", {}, "console_error"), " ", what.message);
  } else {
    mount(banner, String(what));
  }
  banner.hidden = false;
  clearTimeout(notify.timer);
  if (ok) notify.timer = setTimeout(() => (banner.hidden = true), 4000);
}

function clearNotice() {
  $("banner").hidden = true;
}

/** "#fees/2026-11-23" -> "fees": a page may keep its own state after a slash. */
function pageId() {
  return location.hash.slice(1).split("/")[0];
}

function pagesFor(me) {
  return PAGES.filter((p) => p.roles.includes(me.role));
}

function showLogin(message) {
  state.me = null;
  mount($("nav"));
  mount($("who"));
  $("page").hidden = true;
  $("login").hidden = false;
  const error = $("login-error");
  error.hidden = !message;
  if (message) mount(error, message);
  $("api-key").focus();
}

async function logIn(key) {
  setApiKey(key);
  try {
    state.me = await api.get("/v1/me");
  } catch (err) {
    setApiKey(null);
    const text = err instanceof ApiError ? [h("code", {}, err.code), " ", err.message] : String(err);
    showLogin(text);
    return;
  }
  $("login").hidden = true;
  $("page").hidden = false;
  mount(
    $("who"),
    h("span", {"data-testid": "who"}, `${state.me.role}${state.me.customer_id ? ` · ${state.me.customer_id}` : ""}`),
    h("span", {class: "mono", title: state.me.key_id}, shortId(state.me.key_id)),
    h("button", {type: "button", class: "btn small", id: "logout", onclick: logOut}, "Log out"),
  );
  const pages = pagesFor(state.me);
  mount($("nav"), pages.map((p) => h("a", {href: `#${p.id}`, "data-page": p.id}, p.title)));
  if (!pages.some((p) => p.id === pageId())) {
    history.replaceState(null, "", pages.length ? `#${pages[0].id}` : "#");
  }
  route();
}

function logOut() {
  setApiKey(null);
  if (state.cleanup) state.cleanup();
  state.cleanup = null;
  clearNotice();
  history.replaceState(null, "", "#");
  showLogin();
}

async function route() {
  if (!state.me) return;
  if (state.cleanup) state.cleanup();
  state.cleanup = null;
  clearNotice();
  const pages = pagesFor(state.me);
  const page = pages.find((p) => p.id === pageId());
  for (const link of $("nav").querySelectorAll("a")) {
    link.classList.toggle("active", link.dataset.page === page?.id);
  }
  const el = $("page");
  if (!page) {
    mount(el, h("div", {class: "card"}, h("h1", {}, "No pages"), h("p", {class: "muted"}, `A ${state.me.role} key has no console pages; use the API (see /docs).`)));
    return;
  }
  el.dataset.page = page.id;
  mount(el, h("p", {class: "muted"}, "loading…"));
  try {
    state.cleanup = (await page.module.render(el, {me: state.me, notify})) ?? null;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      setApiKey(null);
      showLogin([h("code", {}, err.code), " ", err.message]);
      return;
    }
    mount(el, h("div", {class: "card error", "data-testid": "page-error"}, err instanceof ApiError ? [h("code", {}, err.code), " ", err.message] : String(err)));
  }
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("api-key").value.trim();
  $("api-key").value = "";
  if (key) logIn(key);
});
window.addEventListener("hashchange", route);

if (apiKey()) logIn(apiKey());
else showLogin();
