// The console's browser test: drives the real console in Debian's headless Chromium
// (playwright-core, no browser download) against a server that
// crates/api/tests/browser.rs started and seeded. It logs in as a customer, scrolls
// the history to its third page, presses "sync now", logs in as an operator, runs a
// fee module, rolls a waiting deposit back, replays a dead letter, asks to move the
// provider cohort (which needs a second ops key: maker-checker), creates, rotates
// and revokes an API key, sees the audit chain verified, then logs in as a second
// operator who approves the cohort change, and saves a screenshot of every page.
//
// Env: SETTLE_BASE_URL, SETTLE_CUSTOMER_KEY, SETTLE_OPS_KEY, SETTLE_OPS2_KEY; optional
// SETTLE_SCREENSHOTS_DIR (default docs/screenshots), CHROMIUM_PATH (/usr/bin/chromium),
// SETTLE_BROWSER_TIMEOUT_MS (whole run, default 45000).

import {mkdirSync} from "node:fs";
import {tmpdir} from "node:os";
import {join} from "node:path";
import {chromium} from "playwright-core";

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined || value === "") fail(`${name} is not set`);
  return value;
};
function fail(message) {
  console.error(`console test FAILED: ${message}`);
  process.exit(1);
}

const base = env("SETTLE_BASE_URL").replace(/\/$/, "");
const customerKey = env("SETTLE_CUSTOMER_KEY");
const opsKey = env("SETTLE_OPS_KEY");
const checkerKey = env("SETTLE_OPS2_KEY");
const shots = env("SETTLE_SCREENSHOTS_DIR", "docs/screenshots");
const chromiumPath = env("CHROMIUM_PATH", "/usr/bin/chromium");
const runTimeoutMs = Number(env("SETTLE_BROWSER_TIMEOUT_MS", "45000"));
/** One wait for one thing to show up. */
const STEP_TIMEOUT_MS = 15_000;

const killer = setTimeout(() => fail(`the whole run took longer than ${runTimeoutMs} ms`), runTimeoutMs);
mkdirSync(shots, {recursive: true});

let checks = 0;
function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
  checks += 1;
  console.log(`ok ${checks} - ${what}`);
}

const browser = await chromium.launch({
  executablePath: chromiumPath,
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
});
const pageErrors = [];
let page = null;
try {
  const context = await browser.newContext({viewport: {width: 1280, height: 860}, locale: "ko-KR", timezoneId: "Asia/Seoul"});
  page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on("pageerror", (err) => pageErrors.push(`page error: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error" && !/status of 4\d\d/.test(msg.text())) pageErrors.push(`console error: ${msg.text()}`);
  });
  const snap = async (name) => {
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({path: join(shots, name), fullPage: true});
    console.log(`   saved ${join(shots, name)}`);
  };
  const logIn = async (key) => {
    await page.goto(`${base}/console/`);
    await page.locator("#api-key").waitFor();
    await page.fill("#api-key", key);
    await page.click("#login-button");
  };
  const logOut = async () => {
    await page.click("#logout");
    await page.locator("#login").waitFor();
  };

  // A wrong key is refused with the API's code and message, on the login form.
  await logIn("settle_not_a_real_key");
  const refused = await page.locator("#login-error code").textContent();
  check(Boolean(refused && refused.length > 0), `a wrong key is refused with a code (${refused})`);

  // The customer: history with infinite scroll to the third keyset page.
  await logIn(customerKey);
  await page.locator("#history tr[data-seq]").first().waitFor();
  check((await page.locator("[data-testid=who]").textContent()).startsWith("customer"), "logged in as a customer");
  const pending = await page.locator("#pending tbody tr:not(.empty)").count();
  check(pending >= 1, `the pending transfer is listed (${pending})`);
  for (let wanted = 2; wanted <= 3; wanted += 1) {
    const loaded = Number((await page.locator("#history").getAttribute("data-pages")) ?? 0);
    if (loaded >= wanted) continue;
    await page.locator("#history-sentinel").scrollIntoViewIfNeeded();
    await page.waitForFunction((n) => Number(document.querySelector("#history")?.dataset.pages ?? 0) >= n, wanted);
  }
  const third = await page.locator('#history tr[data-page="3"]').count();
  check(third > 0, `rows of history page 3 are shown (${third})`);
  const seqs = await page.locator("#history tr[data-seq]").evaluateAll((rows) => rows.map((r) => Number(r.dataset.seq)));
  check(seqs.every((s, i) => i === 0 || s < seqs[i - 1]), `history is newest first with no repeats (${seqs.length} rows, #${seqs[0]}…#${seqs.at(-1)})`);
  await page.click("#sync-now");
  await page.waitForFunction(() => /synced/.test(document.querySelector("#sync-note")?.textContent ?? ""));
  check(true, `sync now answered: ${await page.locator("#sync-note").textContent()}`);
  await page.locator("#history tr[data-seq]").first().waitFor();
  await snap("customer-history.png");
  await logOut();

  // The operator: fee days, run the first module that is not done yet.
  await logIn(opsKey);
  await page.locator("#fee-stages .stage").first().waitFor();
  check((await page.locator("[data-testid=who]").textContent()).startsWith("ops"), "logged in as ops");
  await page.locator("#fee-chart svg rect").first().waitFor();
  const bars = await page.locator("#fee-chart svg g.bar").count();
  check(bars >= 2, `the fee chart draws a bar per day (${bars})`);
  const modules = await page.locator("#fee-stages .stage").evaluateAll((cards) => cards.map((c) => [c.dataset.module, c.dataset.state]));
  const target = modules.find(([, state]) => state !== "done");
  check(Boolean(target), `a module is left to run (${JSON.stringify(modules)})`);
  const [module, before] = target;
  await page.click(`#fee-stages .stage[data-module=${module}] button`);
  await page.waitForFunction(
    ([m, b]) => {
      const card = document.querySelector(`#fee-stages .stage[data-module=${m}]`);
      return card && card.dataset.state !== b;
    },
    [module, before],
  );
  const after = await page.locator(`#fee-stages .stage[data-module=${module}]`).getAttribute("data-state");
  check(after !== before, `running ${module} moved it from ${before} to ${after}`);
  await page.click("#fee-report-button");
  await page.locator("#fee-report table").waitFor();
  check(true, "the reconciliation report is shown");
  await snap("fees.png");

  // Payroll.
  await page.click('nav a[data-page="payroll"]');
  await page.locator("#payroll-stages").waitFor();
  const waiting = await page.locator("#payroll-stuck tbody tr:not(.empty)").count();
  check(waiting >= 2, `deposits waiting for an operator are listed (${waiting})`);
  // Roll back the one whose payout account changed holder: it leaves the list.
  await page.locator("#payroll-stuck tbody tr", {hasText: "holder name changed"}).locator("button", {hasText: "Roll back"}).click();
  await page.waitForFunction(() => document.querySelector('#payroll-stages .flow-box[data-state="rolled_back"] .flow-count')?.textContent === "1");
  const left = await page.locator("#payroll-stuck tbody tr:not(.empty)").count();
  check(left === waiting - 1, `the rolled-back deposit left the waiting list (${waiting} → ${left})`);
  await snap("payroll.png");

  // Dead letters: replay one and see it leave the list.
  await page.click('nav a[data-page="dlq"]');
  await page.locator("#dead-letters tbody tr[data-id]").first().waitFor();
  const letters = await page.locator("#dead-letters tbody tr[data-id]").count();
  check(letters >= 1, `dead letters are listed (${letters})`);
  await snap("dead-letters.png");
  const id = await page.locator("#dead-letters tbody tr[data-id]").first().getAttribute("data-id");
  await page.locator(`#dead-letters tbody tr[data-id="${id}"] button`, {hasText: "Replay"}).click();
  await page.waitForFunction((i) => !document.querySelector(`#dead-letters tbody tr[data-id="${CSS.escape(i)}"]`), id);
  check(true, `dead letter ${id} left the list after replay`);

  // Provider flags: ask for the cohort at 30 %; it needs a second ops key, so it
  // stays where it was and an approval is pending.
  await page.click('nav a[data-page="flags"]');
  await page.locator("#cohort").waitFor();
  const cohortBefore = await page.locator("#cohort .progress-label").textContent();
  await page.fill("#cohort-percent", "30");
  await page.locator("#cohort button", {hasText: "Set cohort"}).click();
  await page.waitForFunction(() => /needs a second ops key/.test(document.querySelector("#banner")?.textContent ?? ""));
  const cohortAsked = await page.locator("#cohort .progress-label").textContent();
  check(cohortAsked === cohortBefore, `asking for the cohort changed nothing yet (${cohortAsked})`);

  // The requester sees its own request but cannot approve it.
  await page.click('nav a[data-page="approvals"]');
  await page.locator('#approvals-pending tr[data-action="providers_cohort"]').waitFor();
  const ownButtons = await page.locator('#approvals-pending tr[data-action="providers_cohort"] button', {hasText: "Approve"}).count();
  check(ownButtons === 0, "the requester is offered no Approve button on its own request");

  // API keys: create a service key that expires, see it once, rotate it, revoke it.
  await page.click('nav a[data-page="keys"]');
  await page.locator("#keys tbody tr[data-key]").first().waitFor();
  await page.selectOption("#key-role", "service");
  await page.fill("#key-days", "30");
  await page.locator("#key-create button", {hasText: "Create key"}).click();
  await page.locator("#new-key [data-testid=new-key]").waitFor();
  const created = await page.locator("#new-key [data-testid=new-key]").textContent();
  check(created.startsWith("settle_"), "a new key is shown once");
  const createdId = `key_${created.split("_")[1]}`;
  const row = () => page.locator(`#keys tbody tr[data-key="${createdId}"]`);
  check((await row().getAttribute("data-state")) === "live", `the new key ${createdId} is listed live`);
  await row().locator("button", {hasText: "Rotate"}).click();
  await page.waitForFunction((old) => {
    const shown = document.querySelector("#new-key [data-testid=new-key]")?.textContent;
    return shown && shown !== old;
  }, created);
  const rotated = await page.locator("#new-key [data-testid=new-key]").textContent();
  check(rotated !== created && rotated.startsWith(`settle_${created.split("_")[1]}_`), "rotating shows a new secret for the same key id");
  const oldAnswer = await page.evaluate(async (key) => (await fetch("/v1/me", {headers: {Authorization: `Bearer ${key}`}})).status, created);
  check(oldAnswer === 401, `the old secret is refused after rotation (${oldAnswer})`);
  await snap("keys.png");
  await row().locator("button", {hasText: "Revoke"}).click();
  await page.waitForFunction((id) => document.querySelector(`#keys tbody tr[data-key="${id}"]`)?.dataset.state === "revoked", createdId);
  check(true, `${createdId} is revoked`);

  // The audit log: the chain is verified when the page opens.
  await page.click('nav a[data-page="audit"]');
  await page.waitForFunction(() => document.querySelector("#audit-verify")?.dataset.intact === "true");
  check(true, `the audit chain verifies: ${await page.locator("#audit-verify").textContent()}`);
  await logOut();

  // A second operator approves the cohort change; it runs then.
  await logIn(checkerKey);
  await page.locator("#fee-stages .stage").first().waitFor();
  await page.click('nav a[data-page="approvals"]');
  const pendingRow = page.locator('#approvals-pending tr[data-action="providers_cohort"]');
  await pendingRow.waitFor();
  await snap("approvals.png");
  const approvalId = await pendingRow.getAttribute("data-id");
  await pendingRow.locator("button", {hasText: "Approve"}).click();
  await page.waitForFunction((id) => document.querySelector(`#approvals-decided tr[data-id="${id}"]`)?.dataset.state === "done", approvalId);
  check(true, `the second ops key approved ${approvalId} and it ran`);
  await page.click('nav a[data-page="flags"]');
  await page.waitForFunction(() => /^30% /.test(document.querySelector("#cohort .progress-label")?.textContent ?? ""));
  check(true, "the cohort moved to 30% once approved");
  await snap("providers.png");

  // The audit log shows what this run did, with outcomes.
  await page.click('nav a[data-page="audit"]');
  await page.locator("#audit tbody tr td code").first().waitFor();
  const actions = await page.locator("#audit tbody td code").allTextContents();
  check(
    ["fees.", "payroll.rollback", "replay", "approvals.request", "approvals.approve", "providers.cohort", "keys.rotate", "keys.revoke"].every((what) => actions.some((a) => a.includes(what))),
    `the audit log records the fee run, the rollback, the replay, the approval, the cohort and the keys (${[...new Set(actions)].join(", ")})`,
  );
  await page.waitForFunction(() => document.querySelector("#audit-verify")?.dataset.intact === "true");
  await snap("audit.png");

  check(pageErrors.length === 0, `no script errors in the page${pageErrors.length ? `: ${pageErrors.join("; ")}` : ""}`);
  console.log(`console test: ${checks} checks passed`);
} catch (err) {
  console.error(err.stack ?? String(err));
  if (pageErrors.length) console.error(pageErrors.join("\n"));
  if (page) {
    // What the page showed when it failed: its text and a picture, outside the repo.
    const shown = await page.evaluate(() => `${location.hash}\n${document.querySelector("#banner")?.innerText ?? ""}\n${document.querySelector("main")?.innerText ?? ""}`).catch(() => "");
    console.error(`the page showed:\n${shown.slice(0, 1500)}`);
    const picture = join(tmpdir(), "settle-console-failure.png");
    await page.screenshot({path: picture, fullPage: true}).catch(() => {});
    console.error(`screenshot of the failure: ${picture}`);
  }
  await browser.close().catch(() => {});
  fail(err.message);
}
await browser.close();
clearTimeout(killer);
