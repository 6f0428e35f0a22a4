// The web UI in a real browser: Chromium driven by playwright-core, against a running
// `baton serve` with a token and the workflows of tests/tests/web.rs (the examples and
// `ui_undo`). Run by that test; by hand:
//
//   BATON_URL=http://127.0.0.1:7600 BATON_TOKEN=... BATON_WEB_TOOLS=<dir with node_modules/playwright-core> \
//     BATON_SCREENS=/tmp/screens node tests/web/ui.mjs
//
// It opens the page (and gives it the token it asks for), sees sagas started over the API
// appear in the list without a reload, watches a compensation run on a saga's page, retries
// a failed one, sends a signal and a cancel from the page, starts a saga from its form,
// follows the links between a saga and its sub-sagas, filters the list, and saves
// screenshots to BATON_SCREENS. Exit 0 when every check held; 1 (with what failed and a
// screenshot of the moment) otherwise.

import { createRequire } from 'node:module';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const env = process.env;
const must = (name) => {
  if (!env[name]) throw new Error(`set ${name}`);
  return env[name];
};
const BASE = must('BATON_URL').replace(/\/$/, '');
const TOKEN = must('BATON_TOKEN');
const SCREENS = env.BATON_SCREENS || 'web-screens';
const CHROMIUM = env.BATON_CHROMIUM || '/usr/bin/chromium';
const require = createRequire(join(must('BATON_WEB_TOOLS'), 'package.json'));
const { chromium } = require('playwright-core');

const started = Date.now();
const log = (...args) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s]`, ...args);
let checks = 0;

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
  checks += 1;
}

/** A request to the host's API, as any client makes it. */
async function api(method, path, body) {
  const res = await fetch(BASE + path, {
    method,
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await res.json();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(data)}`);
  return data;
}

const start = (workflow, id, input) => api('POST', '/v1/sagas', { workflow, id, input });

async function until(what, fn, limit = 15000) {
  const deadline = Date.now() + limit;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${limit} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const order = (id, total) => ({
  order_id: id, customer: 'ada', total, items: [{ sku: 'A-1', qty: 1, price: total }],
});

mkdirSync(SCREENS, { recursive: true });
rmSync(join(SCREENS, 'failure.png'), { force: true });
const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
page.setDefaultTimeout(10000);
const problems = [];
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
page.on('console', (m) => {
  // A refused request (the 401 before the token, the 409 of a taken id) is logged by the
  // browser itself; anything else the page logs as an error is a bug.
  if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console: ${m.text()}`);
});

/** Go to a view of the page without reloading it. */
const go = (hash) => page.evaluate((h) => { location.hash = h; }, hash);
const sagaStatus = (status, timeout = 15000) =>
  page.waitForSelector(`#saga-status .pill[data-status="${status}"]`, { timeout });
const shot = (name, fullPage = false) => page.screenshot({ path: join(SCREENS, name), fullPage });

/** Note, every 20 ms, the saga's status and its compensations' as the page shows them. */
const watch = () => page.evaluate(() => {
  window.__seen = new Set();
  clearInterval(window.__watch);
  window.__watch = setInterval(() => {
    const s = document.querySelector('#saga-status .pill');
    if (s) window.__seen.add(`saga:${s.dataset.status}`);
    for (const c of document.querySelectorAll('.comp-step')) window.__seen.add(`comp:${c.dataset.path}:${c.dataset.status}`);
  }, 20);
});
const seen = () => page.evaluate(() => [...window.__seen]);

async function step(name, fn) {
  const t = Date.now();
  log(`${name}...`);
  await fn();
  log(`${name}: ok in ${Date.now() - t} ms`);
}

try {
  await step('the page asks for the token, and keeps it', async () => {
    await page.goto(`${BASE}/`);
    await page.waitForSelector('#token-dialog[open]');
    await page.fill('#token-input', 'not-the-token');
    await page.click('#token-form button[type="submit"]');
    await page.waitForSelector('#token-error:has-text("refused")');
    await shot('token.png');
    await page.fill('#token-input', TOKEN);
    await page.click('#token-form button[type="submit"]');
    await page.waitForSelector('#saga-list .empty:has-text("No sagas yet")');
    await page.waitForSelector('#live[data-state="live"]');
    check(await page.evaluate(() => localStorage.getItem('baton.token')) === TOKEN, 'the token is kept in localStorage');
  });

  await step('a saga started over the API appears in the list, live', async () => {
    await page.evaluate(() => { window.__stayed = true; });
    const t = Date.now();
    await start('order', 'web-order', order('o-42', 2500));
    await page.waitForSelector('tr[data-id="web-order"]', { timeout: 5000 });
    log(`  the row appeared ${Date.now() - t} ms after the start`);
    await page.waitForSelector('tr[data-id="web-order"] td.doing:has-text("approved")', { timeout: 5000 });
    check(await page.evaluate(() => window.__stayed === true), 'the list updated without a reload');
  });

  await step('a compensation runs backwards on the saga page', async () => {
    await start('ui_undo', 'web-undo', { items: ['A-1', 'B-2'] });
    await page.click('tr[data-id="web-undo"]', { timeout: 5000 });
    await page.waitForSelector('#saga-status');
    await watch();
    await page.waitForSelector('[data-step="pause"][data-status="running"]', { timeout: 5000 });
    await sagaStatus('compensating', 8000);
    // The charge is undone at once, then each release takes 700 ms, latest first.
    await page.waitForSelector('.comp-step[data-path="reserve/reserve_one#2"][data-status="running"]', { timeout: 5000 });
    await shot('saga-compensating.png');
    await sagaStatus('compensated');
    const states = await seen();
    for (const s of ['saga:running', 'saga:compensating', 'saga:compensated']) check(states.includes(s), `the page showed ${s}: ${states}`);
    check(states.some((s) => /^comp:reserve\/reserve_one.*:running$/.test(s)), `a release was seen running: ${states}`);
    const lane = await page.$$eval('.comp-step', (els) => els.map((e) => `${e.dataset.path}:${e.dataset.status}`));
    check(lane.join() === 'reserve/reserve_one:completed,reserve/reserve_one#2:completed,charge:completed',
      `the lane, in order of completion, all undone: ${lane}`);
    check((await page.textContent('#saga-error')).includes('out_of_stock'), 'the error is shown');
    check(await page.$('[data-step="boom"][data-status="failed"]'), 'the failed step is drawn failed');
    check((await page.textContent('#comp-progress')).includes('3 of 3'), 'the progress says all is undone');
    await page.waitForSelector('#history li[data-event="compensation_started"]');
    await page.waitForSelector('#history li[data-event="finished"]');
  });

  await step('a failed saga is retried from its page', async () => {
    await start('ui_undo', 'web-retry', { items: ['C-3'], refund_on_attempt: 2 });
    await go('#/sagas/web-retry');
    await sagaStatus('failed');
    await page.waitForSelector('.comp-step[data-path="charge"][data-status="failed"]');
    check((await page.textContent('.comp-step[data-path="charge"]')).includes('refund_refused'), 'the failed undo says why');
    await shot('saga-failed.png');
    await page.click('#act-retry');
    await sagaStatus('compensated', 10000);
    await page.waitForSelector('.comp-step[data-path="charge"][data-status="completed"]');
  });

  await step('a signal sent from the page completes the waiting saga', async () => {
    await page.click('a.brand');
    await page.click('tr[data-id="web-order"]');
    await page.waitForSelector('[data-step="approval"][data-status="running"] .waiting');
    // The steps not reached yet are drawn too, once the definition's outline is read.
    await page.waitForSelector('[data-step="settle"][data-status="idle"] .lanes [data-step="charge"][data-status="idle"]');
    await page.click('#act-signal');
    await page.waitForSelector('#signal-dialog[open]');
    check(await page.inputValue('#signal-name') === 'approved', 'the signal name comes from the waiting step');
    await page.fill('#signal-payload', '{"approved": tru');
    await page.waitForSelector('#signal-payload-status.bad');
    check(await page.isDisabled('#signal-submit'), 'a payload that is not JSON cannot be sent');
    await page.fill('#signal-payload', '{"approved": true, "by": "maria"}');
    check(!(await page.isDisabled('#signal-submit')), 'a JSON payload can be sent');
    await page.click('#signal-submit');
    await sagaStatus('completed');
    await page.waitForSelector('[data-step="settle"][data-status="completed"]');
    await page.waitForSelector('[data-step="notify"][data-status="completed"]');
    check((await page.textContent('[data-step="review"] .jump.taken')).includes('approval'), 'the choice taken is marked');
    check(!(await page.$('#act-signal')), 'no signal button once it ended');
    await shot('saga-order.png');
    await shot('saga-order-full.png', true);
  });

  await step('a running saga is cancelled from its page', async () => {
    await start('order', 'web-cancel', order('o-43', 3000));
    await go('#/sagas/web-cancel');
    await page.waitForSelector('[data-step="approval"][data-status="running"]');
    await page.click('#act-cancel');
    await page.fill('#cancel-reason', 'the customer called');
    await page.click('#cancel-submit');
    await sagaStatus('compensated');
    check((await page.textContent('#saga-error')).includes('the customer called'), 'the reason is shown');
    await page.waitForSelector('.comp-step[data-status="completed"]');
  });

  await step('a saga is started from the form, and its sub-sagas link both ways', async () => {
    await page.click('#start-button');
    await page.waitForSelector('#start-dialog[open]');
    await page.selectOption('#start-workflow', 'trip');
    check(await page.isVisible('#start-schema'), 'the input schema is offered');
    await page.fill('#start-input', '{"trip_id": ');
    await page.waitForSelector('#start-input-status.bad');
    check(await page.isDisabled('#start-submit'), 'an input that is not JSON cannot be sent');
    const trip = { trip_id: 't-100', destination: 'Lisbon', date: '2026-12-24', nights: 3, guests: 2 };
    await page.fill('#start-input', JSON.stringify(trip, null, 2));
    await page.fill('#start-id', 'web-trip');
    check(!(await page.isDisabled('#start-submit')), 'a JSON input can be sent');
    await shot('start-form.png');
    await page.click('#start-submit');
    await page.waitForFunction(() => location.hash === '#/sagas/web-trip');
    await sagaStatus('completed', 20000);
    await page.waitForSelector('[data-step="stay"] .lane [data-step="hotel"][data-status="completed"]');
    check((await page.$$('[data-step="stay"] .lane')).length === 2, 'both branches of the parallel are drawn');
    await shot('saga-trip.png');
    const child = await page.getAttribute('[data-step="flight"] a[data-child]', 'data-child');
    check(child === 'web-trip.flight', `the flight's sub-saga is linked: ${child}`);
    await page.click('[data-step="flight"] a[data-child]');
    await page.waitForSelector('a[data-parent="web-trip"]');
    await sagaStatus('completed');
    await page.click('a[data-parent="web-trip"]');
    await page.waitForFunction(() => location.hash === '#/sagas/web-trip');

    // The same id with another input: the API's refusal, readably.
    await page.click('#start-button');
    await page.selectOption('#start-workflow', 'trip');
    await page.fill('#start-input', JSON.stringify({ ...trip, nights: 4 }));
    await page.fill('#start-id', 'web-trip');
    await page.click('#start-submit');
    await page.waitForSelector('#start-error:has-text("id_taken")');
    await page.click('#start-dialog [data-close]');
  });

  await step('without the definition, a saga is drawn from what ran', async () => {
    // Another page, as on a host that has not loaded the workflow: its outline is a 404.
    const other = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    other.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    await other.addInitScript((t) => localStorage.setItem('baton.token', t), TOKEN);
    await other.route('**/v1/workflows/trip*', (route) => route.fulfill({
      status: 404, contentType: 'application/json',
      body: JSON.stringify({ error: { code: 'unknown_workflow', message: 'not on this host' } }),
    }));
    await other.goto(`${BASE}/#/sagas/web-trip`);
    await other.waitForSelector('.card-head:has-text("drawn from what ran")');
    await other.waitForSelector('[data-step="flight"][data-status="completed"] a[data-child="web-trip.flight"]');
    await other.waitForSelector('[data-step="stay"] .lane [data-step="car"][data-status="completed"]');
    check((await other.$$('[data-step="stay"] .lane')).length === 2, 'both branches drawn from their runs');
    await other.close();
  });

  await step('the list filters by status, workflow and id', async () => {
    await page.click('a.brand');
    await page.click('[data-filter-status="compensated"]');
    await until('only compensated sagas', async () => {
      const rows = await page.$$eval('tr[data-id]', (els) => els.map((e) => `${e.dataset.id}:${e.dataset.status}`));
      return rows.sort().join() === 'web-cancel:compensated,web-retry:compensated,web-undo:compensated';
    }, 5000);
    await page.selectOption('#filter-workflow', 'order');
    await until('the compensated orders', async () => (await page.$$eval('tr[data-id]', (els) => els.map((e) => e.dataset.id))).join() === 'web-cancel', 5000);
    check(await page.evaluate(() => location.hash) === '#/?status=compensated&workflow=order', 'the filters are in the URL');
    await page.click('[data-filter-status="all"]');
    await page.selectOption('#filter-workflow', '');
    await page.fill('#filter-q', 'web-trip.');
    await until('the sub-sagas of web-trip', async () => {
      const ids = await page.$$eval('tr[data-id]', (els) => els.map((e) => e.dataset.id));
      return ids.length === 3 && ids.every((id) => id.startsWith('web-trip.'));
    }, 5000);
    await page.fill('#filter-q', '');
  });

  await step('screenshots of the list and of sagas in each state', async () => {
    await start('order', 'web-approval', order('o-44', 1800));
    await start('ui_undo', 'web-stuck', { items: ['D-4', 'E-5'], refund_on_attempt: 0 });
    await page.waitForSelector('tr[data-id="web-stuck"][data-status="failed"]', { timeout: 15000 });
    await page.waitForSelector('tr[data-id="web-approval"] td.doing:has-text("approved")');
    await page.evaluate(() => document.activeElement && document.activeElement.blur());
    await page.mouse.move(0, 799);
    await page.waitForTimeout(1300); // let the rows' flash fade
    await shot('list.png');
    await go('#/sagas/web-approval');
    await page.waitForSelector('#act-signal');
    await shot('saga-waiting.png');
  });

  check(problems.length === 0, `the page logged no errors: ${problems.join('\n')}`);
  log(`ok: ${checks} checks; screenshots in ${SCREENS}`);
  await browser.close();
} catch (e) {
  console.error(`FAILED: ${e.stack || e}`);
  if (problems.length) console.error(`what the page logged:\n${problems.join('\n')}`);
  await page.screenshot({ path: join(SCREENS, 'failure.png') }).catch(() => {});
  console.error(`the page at the failure: ${join(SCREENS, 'failure.png')} (${page.url()})`);
  await browser.close();
  process.exit(1);
}
