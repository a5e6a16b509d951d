// The front page with a large table (issue 16, section 1): a stack of its own
// whose table is filled with LARGE_TABLE_ROWS rows (100,000 by default) in bulk
// through SQL, not the API. The page must show its first items at once, ask
// for at most two pages of /items before any scroll, keep the tab's JS heap
// small after scrolling through 5,000 items, and still edit and delete an
// item found far down the list. Also here, on stubbed answers: the paging
// rules themselves (never more than two pages without a scroll, one request
// at a time, "Charger plus" from the keyboard, no IntersectionObserver), and
// the status banner keeping one /status request in flight when it is slow.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { apiClient } from '../lib/api.mjs';
import { closeBrowserAndStack, eventually, launchBrowser, pressEnd, Recorder } from '../lib/browser.mjs';
import { startStack, stopStackOnSignal } from '../lib/stack.mjs';

const OUTPUT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'output');
const DESKTOP = { width: 1280, height: 800 };
const ROWS = Number(process.env.LARGE_TABLE_ROWS || 100000);
const INSERT_BATCH = 5000; // rows per INSERT statement
const PAGE_SIZE = 100; // the page asks for /items?limit=100
const SCROLL_ITEMS = 5000;
const FIRST_ITEMS_MS = 1000;
const MAX_PAGES_BEFORE_SCROLL = 2;
const HEAP_LIMIT = 50 * 1024 * 1024;
const frNumber = new Intl.NumberFormat('fr-FR');
const MB = (bytes) => (bytes / 1024 / 1024).toFixed(1);

let stack;
let api;
let browser;
let page; // the page on the large table, shared by the tests that follow one person's visit
let lists; // every GET /items (a page of the list) that page sent, with its timing
const recorder = new Recorder();

stopStackOnSignal(() => stack);

function named(t) {
  recorder.test = t.name;
}

async function newPage(viewport = DESKTOP) {
  const context = await browser.newContext({ viewport, locale: 'fr-FR', timezoneId: 'Europe/Paris' });
  await recorder.attach(context);
  const p = await context.newPage();
  p.setDefaultTimeout(15000);
  return p;
}

// Records the GET /items a page sends (not /items/{id}), and how many were in
// flight at once.
function watchLists(p) {
  const seen = { urls: [], inFlight: 0, maxInFlight: 0 };
  const isList = (req) => req.method() === 'GET' && new URL(req.url()).pathname === '/items';
  p.on('request', (req) => {
    if (!isList(req)) return;
    seen.urls.push(req.url());
    seen.inFlight += 1;
    seen.maxInFlight = Math.max(seen.maxInFlight, seen.inFlight);
  });
  const done = (req) => { if (isList(req)) seen.inFlight -= 1; };
  p.on('requestfinished', done);
  p.on('requestfailed', done);
  return seen;
}

const cards = (p) => p.locator('#items-list > li');

const shownIds = (p) => cards(p).evaluateAll((lis) => lis.map((li) => Number(li.dataset.id)));

// The table filled in bulk: multi-row INSERTs through MariaDB's root socket
// (as scripts/bench.sh --scale does), seconds where the API would take minutes.
async function fillTable(rows) {
  const have = Number((await stack.sql('SELECT COUNT(*) FROM items;')).trim());
  const statements = ['SET NAMES utf8mb4;'];
  for (let first = have + 1; first <= rows; first += INSERT_BATCH) {
    const last = Math.min(rows, first + INSERT_BATCH - 1);
    const values = [];
    for (let i = first; i <= last; i++) values.push(`('Ligne n°${i} de la grande table','Insérée en masse par SQL : ligne ${i} sur ${rows}.')`);
    statements.push(`INSERT INTO items (name, description) VALUES ${values.join(',')};`);
  }
  await stack.sql(statements.join('\n'));
  const [count, minId] = (await stack.sql('SELECT COUNT(*), MIN(id) FROM items;')).trim().split('\t').map(Number);
  return { count, minId };
}

describe('the page with a large table', { timeout: 20 * 60 * 1000 }, () => {
  before(async () => {
    mkdirSync(OUTPUT, { recursive: true });
    // Always a stack of its own: the rows go in through its database socket,
    // and the other suites' stacks stay small.
    stack = await startStack({ logsDir: path.join(OUTPUT, 'stack-logs-large-table'), own: true, tls: false });
    api = apiClient(stack.baseUrl, stack.apiToken);
    browser = await launchBrowser();
  }, { timeout: 16 * 60 * 1000 });

  afterEach(() => recorder.assertNoProblemsInTest());

  after(() => closeBrowserAndStack(browser, stack));

  test(`${frNumber.format(ROWS)} rows loaded in bulk through SQL`, { timeout: 10 * 60 * 1000 }, async (t) => {
    named(t);
    const started = Date.now();
    const { count } = await fillTable(ROWS);
    t.diagnostic(`table filled: ${count} rows in ${Date.now() - started} ms`);
    assert.equal(count, ROWS);
    // The API sees them: a page far into the table.
    const far = await api.call('GET', `/items?after=${ROWS - 10}&limit=5`, { token: '' });
    assert.equal(far.status, 200);
    assert.ok(far.data.length > 0, 'items near the end of the table');
  });

  test('first items at once, at most two pages of /items before any scroll', async (t) => {
    named(t);
    page = await newPage();
    lists = watchLists(page);
    // When the first card enters the list, then the frame after it (painted):
    // milliseconds since navigation start, the browser's own clock.
    await page.addInitScript(() => {
      const watch = new MutationObserver(() => {
        if (!document.querySelector('#items-list > li')) return;
        watch.disconnect();
        window.__firstItemsAt = performance.now();
        requestAnimationFrame(() => { window.__firstItemsPaintedAt = performance.now(); });
      });
      watch.observe(document, { childList: true, subtree: true });
    });
    const started = Date.now();
    await page.goto(stack.baseUrl + '/');
    await cards(page).first().waitFor({ state: 'visible' });
    const wall = Date.now() - started;
    await page.waitForFunction(() => window.__firstItemsPaintedAt !== undefined);
    const timing = await page.evaluate(() => ({
      inserted: window.__firstItemsAt,
      painted: window.__firstItemsPaintedAt,
      responseEnd: performance.getEntriesByType('navigation')[0].responseEnd,
    }));
    t.diagnostic(`first items: in the DOM ${timing.inserted.toFixed(0)} ms, painted ${timing.painted.toFixed(0)} ms after navigation start (page.goto to visible, from node: ${wall} ms)`);
    assert.ok(timing.painted < FIRST_ITEMS_MS, `first items painted ${timing.painted.toFixed(0)} ms after navigation start (limit ${FIRST_ITEMS_MS})`);
    assert.ok(wall < 2 * FIRST_ITEMS_MS, `page.goto to the first visible card took ${wall} ms, seen from node`);
    const box = await cards(page).first().boundingBox();
    assert.ok(box && box.y < DESKTOP.height, 'the first card is in the viewport');

    // No scroll: whatever the observer does, the page stops at two pages.
    await page.locator('#items-state[data-state="ready"]').waitFor();
    await page.waitForTimeout(1500);
    t.diagnostic(`GET /items before any scroll: ${lists.urls.length} (${lists.urls.join(' ')})`);
    assert.ok(lists.urls.length >= 1 && lists.urls.length <= MAX_PAGES_BEFORE_SCROLL, `${lists.urls.length} pages of /items before any scroll`);
    assert.equal(await page.evaluate(() => window.scrollY), 0, 'nothing scrolled');
    const shown = lists.urls.length * PAGE_SIZE;
    assert.equal(await cards(page).count(), shown);
    const ids = await shownIds(page);
    const firstIds = (await stack.sql(`SELECT id FROM items ORDER BY id LIMIT ${shown};`)).trim().split('\n').map(Number);
    assert.deepEqual(ids, firstIds, 'the first items of the table, in order');
    assert.equal(await page.locator('#items-count').textContent(), `(${frNumber.format(shown)} éléments et plus)`);
    assert.equal(await page.getByRole('button', { name: 'Charger plus d’éléments' }).count(), 1);
    await page.screenshot({ path: path.join(OUTPUT, 'large-table-first.png') });
  });

  test(`scrolling through ${frNumber.format(SCROLL_ITEMS)} items: a page at a time, in order; the JS heap stays under 50 MB`, { timeout: 5 * 60 * 1000 }, async (t) => {
    named(t);
    assert.ok(page, 'the page of the previous test');
    const started = Date.now();
    await page.locator('#items-title').focus(); // End scrolls the page, not a field
    // Counted with childElementCount: polling leaves next to no garbage in the
    // page's heap (a locator's count() builds an array of every card).
    const shownCount = () => page.evaluate(() => document.getElementById('items-list').childElementCount);
    for (let count = await shownCount(); count < SCROLL_ITEMS; count = await shownCount()) {
      await pressEnd(page);
      await page.waitForFunction((n) => document.getElementById('items-list').childElementCount > n, count, { timeout: 15000 });
    }
    const scrolled = Date.now() - started;
    const count = await cards(page).count();
    await page.locator('#items-state[data-state="ready"]').waitFor();
    t.diagnostic(`${count} items after ${lists.urls.length} pages, scrolled in ${scrolled} ms; at most ${lists.maxInFlight} page request(s) in flight`);
    assert.equal(lists.maxInFlight, 1, 'one page request in flight at a time');
    assert.equal(lists.urls.length, count / PAGE_SIZE, 'one request per page shown');
    assert.equal(new Set(lists.urls).size, lists.urls.length, 'no page asked twice');
    const ids = await shownIds(page);
    const firstIds = (await stack.sql(`SELECT id FROM items ORDER BY id LIMIT ${count};`)).trim().split('\n').map(Number);
    assert.deepEqual(ids, firstIds, 'the first items of the table, each once, in order');
    assert.equal(await page.locator('#items-count').textContent(), `(${frNumber.format(count)} éléments et plus)`);
    await page.screenshot({ path: path.join(OUTPUT, 'large-table-scrolled.png') });

    // The tab's JS heap, as DevTools reports it (no garbage collection forced).
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Performance.enable');
    const { metrics } = await cdp.send('Performance.getMetrics');
    const metric = Object.fromEntries(metrics.map((m) => [m.name, m.value]));
    t.diagnostic(`after ${count} items: JSHeapUsedSize ${MB(metric.JSHeapUsedSize)} MB (total ${MB(metric.JSHeapTotalSize)} MB), ${metric.Nodes} DOM nodes`);
    assert.ok(metric.JSHeapUsedSize > 0, 'a heap size was read');
    assert.ok(metric.JSHeapUsedSize < HEAP_LIMIT, `JS heap ${MB(metric.JSHeapUsedSize)} MB after ${count} items (limit ${MB(HEAP_LIMIT)} MB)`);
    // For the record only: what stays alive after a garbage collection.
    await cdp.send('HeapProfiler.collectGarbage');
    const live = Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value]));
    t.diagnostic(`after a garbage collection: JSHeapUsedSize ${MB(live.JSHeapUsedSize)} MB`);
    await cdp.detach();
  });

  test('edit and delete an item found far down the list, without reloading it', async (t) => {
    named(t);
    assert.ok(page, 'the page of the previous tests');
    const countBefore = await cards(page).count();
    assert.ok(countBefore >= SCROLL_ITEMS);
    const pagesBefore = lists.urls.length;
    const writes = [];
    page.on('request', (req) => {
      if (req.method() === 'PUT' || req.method() === 'DELETE') writes.push({ method: req.method(), ifMatch: req.headers()['if-match'] });
    });
    await page.locator('#token-input').fill(stack.apiToken);
    await page.locator('#token-input').press('Enter');
    await page.locator('#token-active').waitFor();

    // Two items far down: one to edit, one to delete.
    const ids = await shownIds(page);
    const [editId, deleteId] = [ids[countBefore - 300], ids[countBefore - 299]];
    const li = page.locator(`#items-list > li[data-id="${editId}"]`);
    await li.locator('button[data-action="edit"]').click();
    const nameInput = page.locator(`#edit-${editId}-name`);
    assert.equal(await nameInput.inputValue(), (await api.get(editId)).data.name);
    await nameInput.fill('Modifiée loin dans la liste — « après défilement »');
    await nameInput.press('Enter');
    await eventually(async () => assert.equal(await li.locator('.item-name').textContent(), 'Modifiée loin dans la liste — « après défilement »'));
    const box = await li.boundingBox();
    assert.ok(box && box.y + box.height > 0 && box.y < DESKTOP.height, 'the edited card is still in view');
    await page.screenshot({ path: path.join(OUTPUT, 'large-table-edited.png') });
    const stored = await api.get(editId);
    assert.equal(stored.data.name, 'Modifiée loin dans la liste — « après défilement »');
    assert.match(stored.data.description, /Insérée en masse par SQL/);

    const gone = page.locator(`#items-list > li[data-id="${deleteId}"]`);
    await gone.locator('button[data-action="delete"]').click();
    await gone.locator('button[data-action="confirm-delete"]').click();
    await eventually(async () => assert.equal(await gone.count(), 0));
    assert.match(await page.locator('#edit-notice').textContent(), /supprimé/);
    assert.equal((await api.get(deleteId)).status, 404);

    // Nothing was reloaded: the same cards, less the deleted one.
    assert.equal(lists.urls.length, pagesBefore, 'no page of /items asked during the edit and the delete');
    assert.equal(await cards(page).count(), countBefore - 1);
    assert.deepEqual(await shownIds(page), ids.filter((id) => id !== deleteId));
    assert.equal(await page.locator('#items-count').textContent(), `(${frNumber.format(countBefore - 1)} éléments et plus)`);
    assert.equal(writes.length, 2);
    for (const w of writes) assert.match(w.ifMatch || '', /^"[^"]+"$/, `${w.method} carries If-Match`);
    await page.context().close();
    page = null;
  });

  test('on stubbed pages: never more than two pages without a scroll, one at a time; "Charger plus" from the keyboard', async (t) => {
    named(t);
    // Pages of three items that never end, answered after 300 ms: the list
    // never fills a tall window, so only the rule stops the observer.
    const stub = await newPage({ width: 1280, height: 4000 });
    const seen = watchLists(stub);
    await stub.route((url) => url.pathname === '/items', async (route) => {
      const after = Number(new URL(route.request().url()).searchParams.get('after') || 0);
      const body = [1, 2, 3].map((k) => ({ id: after + k, name: `Élément simulé n°${after + k}`, description: null, created_at: '2026-01-01T12:00:00Z' }));
      await new Promise((resolve) => setTimeout(resolve, 300));
      await route.fulfill({
        status: 200,
        contentType: 'application/json',
        headers: { Link: `</items?after=${after + 3}&limit=${PAGE_SIZE}>; rel="next"` },
        body: JSON.stringify(body),
      }).catch(() => {}); // the page may be closed meanwhile
    });
    await stub.goto(stack.baseUrl + '/');
    await eventually(async () => assert.equal(await cards(stub).count(), 6));
    await stub.waitForTimeout(2000);
    assert.equal(seen.urls.length, 2, `two pages without a scroll: ${seen.urls.join(' ')}`);
    assert.equal(await cards(stub).count(), 6);
    assert.equal(await stub.locator('#items-count').textContent(), '(6 éléments et plus)');
    assert.equal(await stub.locator('#items-state').textContent(), '6 éléments chargés, d’autres suivent.');

    // "Charger plus", from the keyboard: exactly one page more, focus kept.
    const button = stub.getByRole('button', { name: 'Charger plus d’éléments' });
    assert.equal(await button.getAttribute('aria-describedby'), 'items-count');
    await button.focus();
    await stub.keyboard.press('Enter');
    await stub.keyboard.press('Enter'); // a second press while the first is on its way: ignored
    await eventually(async () => assert.equal(await cards(stub).count(), 9));
    await stub.waitForTimeout(1000);
    assert.equal(seen.urls.length, 3, 'one page per press, none while one is in flight');
    assert.equal(await stub.evaluate(() => document.activeElement.id), 'items-more-button');

    // A real scroll (the window made short enough to scroll): at most two pages more.
    await stub.setViewportSize(DESKTOP);
    await stub.waitForTimeout(500);
    assert.equal(seen.urls.length, 3, 'resizing is not a scroll');
    await stub.mouse.move(640, 400);
    await stub.mouse.wheel(0, 5000);
    await eventually(async () => assert.ok(seen.urls.length >= 4, 'the scroll loaded a page'));
    await stub.waitForTimeout(2000);
    assert.ok(seen.urls.length <= 5, `${seen.urls.length - 3} pages after one scroll`);
    assert.equal(seen.maxInFlight, 1, 'one page request in flight at a time');
    assert.deepEqual(await shownIds(stub), Array.from({ length: seen.urls.length * 3 }, (_, i) => i + 1));
    await stub.context().close();
  });

  test('without IntersectionObserver: "Charger plus" loads each page, up to the end of the list', async (t) => {
    named(t);
    const stub = await newPage();
    const seen = watchLists(stub);
    await stub.addInitScript(() => { delete window.IntersectionObserver; });
    await stub.route((url) => url.pathname === '/items', async (route) => {
      const after = Number(new URL(route.request().url()).searchParams.get('after') || 0);
      const body = [1, 2, 3].map((k) => ({ id: after + k, name: `Élément simulé n°${after + k}`, description: 'Sans observateur.', created_at: '2026-01-01T12:00:00Z' }));
      const headers = after + 3 < 9 ? { Link: `</items?after=${after + 3}&limit=${PAGE_SIZE}>; rel="next"` } : {};
      await route.fulfill({ status: 200, contentType: 'application/json', headers, body: JSON.stringify(body) });
    });
    await stub.goto(stack.baseUrl + '/');
    await eventually(async () => assert.equal(await cards(stub).count(), 3));
    assert.equal(await stub.evaluate(() => typeof window.IntersectionObserver), 'undefined');
    await stub.waitForTimeout(1000);
    assert.equal(seen.urls.length, 1, 'the next page waits for the button');
    const button = stub.getByRole('button', { name: 'Charger plus d’éléments' });
    await button.focus();
    await stub.keyboard.press('Enter');
    await eventually(async () => assert.equal(await cards(stub).count(), 6));
    await stub.keyboard.press(' ');
    await eventually(async () => assert.equal(await cards(stub).count(), 9));
    // The last page: no button, the end said, the keyboard focus on that line.
    await stub.locator('#items-end').waitFor();
    assert.equal(await stub.locator('#items-more').isVisible(), false);
    assert.equal(await stub.evaluate(() => document.activeElement.id), 'items-end');
    assert.equal(await stub.locator('#items-count').textContent(), '(9 éléments)');
    assert.equal(await stub.locator('#items-state').textContent(), '9 éléments chargés.');
    assert.equal(seen.urls.length, 3);
    await stub.screenshot({ path: path.join(OUTPUT, 'large-table-end-of-list.png') });
    await stub.context().close();
  });

  test('the status banner keeps one /status request in flight when /status is slow', { timeout: 2 * 60 * 1000 }, async (t) => {
    named(t);
    const DELAY_MS = 8000;
    const WATCH_MS = 14000;
    const stub = await newPage();
    const status = { sent: 0, inFlight: 0, maxInFlight: 0 };
    const isStatus = (req) => new URL(req.url()).pathname === '/status';
    stub.on('request', (req) => {
      if (!isStatus(req)) return;
      status.sent += 1;
      status.inFlight += 1;
      status.maxInFlight = Math.max(status.maxInFlight, status.inFlight);
    });
    const done = (req) => { if (isStatus(req)) status.inFlight -= 1; };
    stub.on('requestfinished', done);
    stub.on('requestfailed', done);
    // /status answers after 8 s (the page gives up after 4); /items fails
    // (502), and every failure of a read asks the banner to check at once.
    await stub.route((url) => url.pathname === '/status', async (route) => {
      await new Promise((resolve) => setTimeout(resolve, DELAY_MS));
      await route.fulfill({ status: 200, contentType: 'application/json', body: '{"status":"OK","database_connection":"OK"}' }).catch(() => {});
    });
    await stub.route((url) => url.pathname === '/items', (route) => route.fulfill({
      status: 502, contentType: 'application/json', body: '{"error":"bad gateway"}',
    }));
    await recorder.allowingHttpErrors([502, 'net::ERR_FAILED', 'net::ERR_ABORTED'], async () => {
      await stub.goto(stack.baseUrl + '/');
      await stub.locator('#items-state[data-state="error"]').waitFor();
      // Meanwhile, more reasons to check: the tab shown again, the list reloaded (502 again).
      const until = Date.now() + WATCH_MS;
      while (Date.now() < until) {
        await stub.evaluate(() => document.dispatchEvent(new Event('visibilitychange')));
        await stub.locator('#items-reload').click();
        await stub.waitForTimeout(250);
      }
      assert.equal(await stub.locator('#tier-front').textContent(), 'KO');
      assert.match(await stub.locator('#status-message').textContent(), /Le serveur ne répond pas/);
    });
    t.diagnostic(`/status: ${status.sent} requests in ${WATCH_MS} ms, at most ${status.maxInFlight} in flight`);
    assert.equal(status.maxInFlight, 1, 'one /status request in flight at most');
    assert.ok(status.sent >= 2, `the banner kept checking: ${status.sent} requests`);
    assert.ok(status.sent <= Math.ceil(WATCH_MS / 4000) + 2, `${status.sent} requests: no pile-up`);
    await stub.context().close();
  });
});
