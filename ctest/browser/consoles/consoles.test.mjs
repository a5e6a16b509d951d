// The items dashboard (monitoring/consoles/items.html) in Chromium, as a
// running Prometheus serves it at /consoles/items.html. It needs that
// Prometheus, scraping a live stack:
//
//   PROMETHEUS_URL=http://127.0.0.1:9090 node --test ctest/browser/consoles/
//
// EXPECT_DB=down (default up): the database is stopped on purpose (a drill)
// and the page must say so.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { launchBrowser, Recorder } from '../lib/browser.mjs';

const OUTPUT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'output');
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 375, height: 812 };
// The routes of fcgi-app/src/router.c, as the metrics label them.
const ROUTES = ['/status', '/items', '/items/{id}', '/metrics', 'unmatched'];
const GRAPHS = ['graph-rate', 'graph-errors', 'graph-p50', 'graph-p99', 'graph-workers', 'graph-db'];

const EXPECT_DB = process.env.EXPECT_DB || 'up';
// Screenshots of a drill get a name of their own: they do not replace the normal ones.
const SUFFIX = EXPECT_DB === 'down' ? '-db-down' : '';

let prometheus; // URL of the Prometheus under test, without a trailing slash
let browser;
const recorder = new Recorder();

function named(t) {
  recorder.test = t.name;
}

// A page whose every request is recorded; requests to anything but
// loopback are refused by the recorder, and so are requests to any host but
// Prometheus's when that is not on loopback (e.g. http://prometheus:9090).
// Any answer >= 400 is a problem too.
async function newPage(viewport) {
  const context = await browser.newContext({ viewport });
  await recorder.attach(context);
  const origin = new URL(prometheus).origin;
  // Routes run in reverse order of registration: this one sees requests first.
  await context.route((url) => url.origin === origin, (route) => {
    recorder.requests.push(route.request().url());
    return route.continue();
  });
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  page.on('response', (res) => {
    if (res.status() >= 400) recorder.add('HTTP error', `${res.status()} ${res.url()}`);
  });
  page.on('requestfailed', (req) => {
    const reason = req.failure() ? req.failure().errorText : 'failed';
    if (reason !== 'net::ERR_BLOCKED_BY_CLIENT') recorder.add('request failed', `${reason} ${req.url()}`);
  });
  return page;
}

// Opens the dashboard and waits until every graph has drawn its lines or said
// "no data" (or failed): the page then asks for nothing more.
async function openDashboard(viewport) {
  const page = await newPage(viewport);
  const res = await page.goto(`${prometheus}/consoles/items.html`, { waitUntil: 'load' });
  assert.ok(res, 'an answer for /consoles/items.html');
  const body = res.status() === 200 ? '' : (await res.text()).slice(0, 2000);
  assert.equal(res.status(), 200, `GET /consoles/items.html: ${res.status()}\n${body}`);
  assert.match(res.headers()['content-type'] || '', /^text\/html/);
  await page.waitForFunction((ids) => ids.every((id) => {
    const node = document.getElementById(id);
    return node && !node.querySelector('img.prom_graph_loading')
      && (node.querySelector('svg') || node.querySelector('.prom_graph_error'));
  }), GRAPHS, { timeout: 30000 });
  return page;
}

const text = async (page, selector) => (await page.locator(selector).textContent()).replace(/\s+/g, ' ').trim();

// What is wrong with the environment, or null: the run then fails (one
// failing test saying so), it is never skipped.
function configProblem() {
  if (!process.env.PROMETHEUS_URL) {
    return 'PROMETHEUS_URL is not set: this test needs a running Prometheus that serves '
      + 'monitoring/consoles (--web.console.templates, --web.console.libraries) and scrapes the stack, '
      + 'e.g. PROMETHEUS_URL=http://127.0.0.1:9090 node --test ctest/browser/consoles/';
  }
  if (!['up', 'down'].includes(EXPECT_DB)) return `EXPECT_DB must be "up" or "down", not "${EXPECT_DB}"`;
  return null;
}

const problem = configProblem();
if (problem) {
  test('PROMETHEUS_URL and EXPECT_DB', () => assert.fail(problem));
} else {
  dashboardSuite();
}

function dashboardSuite() {
  describe('items dashboard (Prometheus console) in Chromium', { timeout: 5 * 60 * 1000 }, () => {
    before(async () => {
      prometheus = process.env.PROMETHEUS_URL.replace(/\/+$/, '');
      try {
        const ready = await fetch(`${prometheus}/-/ready`, { signal: AbortSignal.timeout(10000) });
        assert.equal(ready.status, 200, `${prometheus}/-/ready answered ${ready.status}`);
      } catch (err) {
        throw new Error(`Prometheus at PROMETHEUS_URL=${prometheus} is not ready: ${err.message}`);
      }
      mkdirSync(OUTPUT, { recursive: true });
      browser = await launchBrowser();
    });

    afterEach(() => recorder.assertNoProblemsInTest());

    after(async () => {
      if (browser) await browser.close();
    });

    test(`status row: database ${EXPECT_DB}, workers and replicas as numbers; routes and graphs shown`, async (t) => {
      named(t);
      const page = await openDashboard(DESKTOP);
      assert.match(await page.title(), /items/);

      // Database
      const db = await text(page, '#db-state');
      assert.equal(db, EXPECT_DB, `database status: "${db}" (card: ${await text(page, '#status-db')})`);
      assert.equal(await page.locator('#status-db').getAttribute('data-state'), EXPECT_DB === 'up' ? 'ok' : 'bad');

      // Workers alive / configured, api replicas scraped / found, alerts firing
      for (const id of ['workers-alive', 'workers-configured', 'replicas-up', 'replicas-total', 'alerts-firing']) {
        const value = await text(page, `#${id}`);
        assert.match(value, /^\d+$/, `#${id} is a number, not "${value}"`);
      }
      assert.ok(Number(await text(page, '#workers-alive')) >= 1, 'at least one worker alive');
      assert.ok(Number(await text(page, '#replicas-up')) >= 1, 'at least one api replica scraped');

      // Traffic by route: one row per route of the router, with a rate
      const routes = await page.locator('#routes tbody tr[data-route]').evaluateAll(
        (trs) => trs.map((tr) => tr.dataset.route));
      assert.deepEqual([...routes].sort(), [...ROUTES].sort(), 'one table row per route');
      const pageText = await page.locator('main').textContent();
      for (const route of ROUTES) assert.ok(pageText.includes(route), `route ${route} named on the page`);
      for (const route of ROUTES) {
        const rate = await text(page, `#routes tr[data-route="${route}"] td:nth-child(2)`);
        assert.match(rate, /^\d/, `request rate of ${route}: "${rate}"`);
      }

      // Graphs: none failed; the request rate has lines
      for (const id of GRAPHS) {
        const msg = await page.locator(`#${id} .prom_graph_error`).allTextContents();
        assert.ok(!msg.some((m) => /failed|error/i.test(m)), `graph ${id}: ${msg.join(' ')}`);
      }
      assert.ok(await page.locator('#graph-rate svg path').count() > 0, 'the request-rate graph has lines');

      // Figures that cannot be read anywhere are "no data", never a template error
      assert.doesNotMatch(pageText, /error executing template|<no value>|NaN/);

      await page.screenshot({ path: path.join(OUTPUT, `monitoring-dashboard${SUFFIX}.png`), fullPage: true });
      await page.context().close();
    });

    test('phone width: readable, no horizontal scrolling', async (t) => {
      named(t);
      const page = await openDashboard(PHONE);
      assert.equal(await text(page, '#db-state'), EXPECT_DB);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      assert.equal(overflow, 0, 'no horizontal overflow on a phone');
      await page.screenshot({ path: path.join(OUTPUT, `monitoring-dashboard-phone${SUFFIX}.png`), fullPage: true });
      await page.context().close();
    });

    test('every request went to Prometheus itself', (t) => {
      named(t);
      const origin = new URL(prometheus).origin;
      const elsewhere = recorder.requests.filter((u) => !u.startsWith('data:') && new URL(u).origin !== origin);
      assert.deepEqual(elsewhere, [], 'requests to anything but Prometheus');
      assert.ok(recorder.requests.some((u) => u.includes('/api/v1/query_range')), 'the graphs queried Prometheus');
    });
  });
}
