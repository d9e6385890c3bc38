// The one place the console talks to the API. The key lives in sessionStorage (gone
// when the tab closes); every error becomes an ApiError carrying the API's stable code.

const KEY_STORAGE = "settle.apiKey";

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

/** A fresh Idempotency-Key for one press of a button. */
export function idempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function request(method, path, body) {
  const headers = {Accept: "application/json"};
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  if (method !== "GET") headers["Idempotency-Key"] = idempotencyKey();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
  } catch (err) {
    throw new ApiError(0, "network_error", `the API did not answer: ${err.message}`, null);
  }
  const text = await response.text();
  let json = null;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
  }
  if (!response.ok) {
    const code = json?.code ?? `http_${response.status}`;
    const message = json?.message ?? (text.slice(0, 200) || response.statusText);
    throw new ApiError(response.status, code, message, json?.details ?? null);
  }
  return json;
}

export const api = {
  get: (path) => request("GET", path),
  post: (path, body = {}) => request("POST", path, body),
};

/** Path segment escaping for ids that go into a URL. */
export function seg(value) {
  return encodeURIComponent(String(value));
}

/** Whether an answer is a pending approval (HTTP 202 under maker-checker) rather
 * than the action's result: the action waits for a second ops key. */
export function awaitingApproval(answer) {
  return Boolean(answer && typeof answer.approval_id === "string" && answer.state === "pending");
}

/** The banner text for an action that now waits for approval. */
export function approvalNote(what, answer) {
  return `${what} needs a second ops key: approval ${answer.approval_id} requested (see Approvals)`;
}
