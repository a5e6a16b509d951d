// Browser tests of the front page (nginx/html/) against the real stack:
// nginx -> FastCGI workers -> MariaDB, started by scripts/run-local.sh.
// Run with `npm test` in ctest/browser (node's test runner).

import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { apiClient, createMany } from '../lib/api.mjs';
import { closeBrowserAndStack, eventually, launchBrowser, pressEnd, Recorder } from '../lib/browser.mjs';
import { REPO_ROOT, startStack, stopStackOnSignal } from '../lib/stack.mjs';

const OUTPUT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'output');
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 375, height: 812 };
const MONTHS = 'janvier|février|mars|avril|mai|juin|juillet|août|septembre|octobre|novembre|décembre';
const FR_DATE = new RegExp(`^\\d{1,2} (${MONTHS}) \\d{4} à \\d{2}:\\d{2}$`);

// The seed rows, read from the SQL file the database is loaded with.
function seedItems() {
  const sql = readFileSync(path.join(REPO_ROOT, 'mysql', 'seed.sql'), 'utf8');
  const rows = [...sql.matchAll(/\(\s*'((?:[^']|'')*)'\s*,\s*'((?:[^']|'')*)'\s*\)/g)];
  return rows.map((m) => ({ name: m[1].replaceAll("''", "'"), description: m[2].replaceAll("''", "'") }));
}

let stack;
let api;
let browser;
const recorder = new Recorder();

async function newPage(viewport = DESKTOP) {
  const context = await browser.newContext({ viewport, locale: 'fr-FR', timezoneId: 'Europe/Paris' });
  await recorder.attach(context);
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  return page;
}

// Opens the page and waits until the whole list is loaded.
async function openPage(viewport = DESKTOP) {
  const page = await newPage(viewport);
  await page.goto(stack.baseUrl + '/');
  await waitForList(page);
  return page;
}

async function waitForList(page) {
  await page.locator('#items-state[data-state="ready"], #items-state[data-state="empty"]').waitFor({ timeout: 30000 });
}

async function enterToken(page, value) {
  await page.locator('#token-input').fill(value);
  await page.locator('#token-input').press('Enter');
  await page.locator('#token-active').waitFor();
}

const itemLi = (page, id) => page.locator(`#items-list > li[data-id="${id}"]`);
const PAGE_SIZE = 100; // the page asks for /items?limit=100
const frNumber = new Intl.NumberFormat('fr-FR');

// Presses "Charger plus" until the item's card is shown (the page loads the
// list a page at a time), or fails when the list ends without it.
async function showItem(page, id) {
  for (let pages = 0; pages < 1000; pages++) {
    if (await itemLi(page, id).count() > 0) return itemLi(page, id);
    const more = page.locator('#items-more-button');
    assert.ok(await more.isVisible(), `item ${id} not in the list, and no more pages`);
    const before = await page.locator('#items-list > li').count();
    await more.click();
    await eventually(async () => assert.ok(await page.locator('#items-list > li').count() > before, 'a page more'));
  }
  throw new Error(`item ${id}: too many pages`);
}

// GET over HTTPS from node, trusting only `caFile` (not the system's CAs):
// the chain is checked by node's TLS, independently of the browser.
// Fills the create form, submits it, waits for the page's notice: the item as the API then holds it.
async function createThroughForm(page, name, description) {
  await page.locator('#create-name').fill(name);
  await page.locator('#create-description').fill(description);
  await page.getByRole('button', { name: 'Ajouter', exact: true }).click();
  await eventually(async () => assert.match(await page.locator('#edit-notice').textContent(), /ajouté/));
  const created = (await api.all()).find((i) => i.name === name);
  assert.ok(created, 'saved through the API');
  return created;
}

function httpsGet(url, caFile) {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca: readFileSync(caFile), timeout: 10000 }, (res) => {
      const chunks = [];
      // Read now: the socket is detached from the response once it ends.
      const { authorized } = res.socket;
      const peer = res.socket.getPeerCertificate(true);
      res.on('data', (chunk) => chunks.push(chunk));
      res.on('end', () => resolve({
        status: res.statusCode,
        headers: res.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        authorized,
        peer,
      }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timed out`)));
    req.on('error', reject);
  });
}

stopStackOnSignal(() => stack);

function named(t) {
  recorder.test = t.name;
}

describe('front page in Chromium', { timeout: 20 * 60 * 1000 }, () => {
  before(async () => {
    mkdirSync(OUTPUT, { recursive: true });
    stack = await startStack({ logsDir: path.join(OUTPUT, 'stack-logs') });
    api = apiClient(stack.baseUrl, stack.apiToken);
    browser = await launchBrowser();
  }, { timeout: 16 * 60 * 1000 });

  // Each test answers for its own pages: no console error, page error,
  // dialog, CSP violation or non-loopback request while it ran.
  afterEach(() => recorder.assertNoProblemsInTest());

  after(() => closeBrowserAndStack(browser, stack));

  test('static files: no inline code, no HTML sinks, strict CSP header', async (t) => {
    named(t);
    const html = readFileSync(path.join(REPO_ROOT, 'nginx', 'html', 'index.html'), 'utf8');
    assert.match(html, /<html lang="fr">/);
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/i, 'inline <script>');
    assert.doesNotMatch(html, /<style\b/i, 'inline <style>');
    assert.doesNotMatch(html, /\sstyle\s*=/i, 'style attribute');
    assert.doesNotMatch(html, /\son[a-z]+\s*=/i, 'inline event handler');
    assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//i, 'external resource');
    const js = readFileSync(path.join(REPO_ROOT, 'nginx', 'html', 'app.js'), 'utf8');
    for (const sink of ['innerHTML', 'outerHTML', 'insertAdjacentHTML', 'document.write', 'eval(', 'new Function', '.style.', "setAttribute('style'"]) {
      assert.ok(!js.includes(sink), `app.js uses ${sink}`);
    }
    const res = await fetch(stack.baseUrl + '/', { signal: AbortSignal.timeout(10000) });
    assert.equal(res.status, 200);
    const csp = res.headers.get('content-security-policy') || '';
    assert.match(csp, /default-src 'self'/, `CSP header: ${csp}`);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, `CSP header: ${csp}`);
  });

  test('the five seed items appear with their accents, the banner says all is well', async (t) => {
    named(t);
    const seed = seedItems();
    assert.equal(seed.length, 5, 'mysql/seed.sql holds five items');
    assert.ok(seed.some((s) => /[éèàç]/.test(s.name + s.description)), 'the seed has accents');
    const page = await openPage();
    assert.equal(await page.getAttribute('html', 'lang'), 'fr');
    assert.match(await page.title(), /Éléments/);
    assert.equal(await page.locator('h1').count(), 1);

    const cards = await page.locator('#items-list > li').evaluateAll((lis) => lis.map((li) => ({
      id: Number(li.dataset.id),
      name: li.querySelector('.item-name').textContent,
      description: li.querySelector('.item-description').textContent,
      datetime: li.querySelector('time').getAttribute('datetime'),
      date: li.querySelector('time').textContent,
    })));
    for (const s of seed) {
      const card = cards.find((c) => c.name === s.name);
      assert.ok(card, `seed item "${s.name}" shown`);
      assert.equal(card.description, s.description);
      assert.match(card.datetime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      assert.match(card.date, FR_DATE, `French date: ${card.date}`);
    }
    const byApi = await api.all();
    assert.equal(cards.length, byApi.length, 'one card per item');

    await eventually(async () => {
      assert.equal(await page.locator('#status').getAttribute('data-state'), 'ok');
    });
    for (const tier of ['front', 'api', 'db']) {
      assert.equal(await page.locator(`#tier-${tier}`).textContent(), 'OK', tier);
    }
    assert.match(await page.locator('#status-message').textContent(), /Tout fonctionne/);

    // No token: no editing control anywhere.
    assert.equal(await page.locator('#create').isVisible(), false);
    assert.equal(await page.locator('#items-list button').count(), 0);
    assert.equal(await page.locator('#items-list input, #items-list textarea').count(), 0);
    assert.equal(await page.locator('#token-input').isVisible(), true);
    await page.context().close();
  });

  test('keyboard and labels: skip link, every field labelled', async (t) => {
    named(t);
    const page = await openPage();
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Aller à la liste des éléments');
    await page.keyboard.press('Enter');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'items-title');
    await enterToken(page, stack.apiToken);
    const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input, textarea, select')]
      .filter((e) => e.labels.length === 0).map((e) => e.id || e.name));
    assert.deepEqual(unlabelled, []);
    // Token in sessionStorage only, nothing persistent.
    const storage = await page.evaluate(() => ({ session: sessionStorage.length, local: localStorage.length, cookie: document.cookie }));
    assert.deepEqual(storage, { session: 1, local: 0, cookie: '' });
    await page.context().close();
  });

  test('an item created through the API appears after reload', async (t) => {
    named(t);
    const page = await openPage();
    const item = await api.create({ name: 'Créé par l’API — « ça marche »', description: 'Ligne 1\nLigne 2 : été, où, garçon, 🇫🇷' });
    assert.equal(await itemLi(page, item.id).count(), 0);
    await page.reload();
    await waitForList(page);
    assert.equal(await itemLi(page, item.id).locator('.item-name').textContent(), item.name);
    assert.equal(await itemLi(page, item.id).locator('.item-description').textContent(), item.description);
    await page.context().close();
  });

  test('a name holding HTML shows as text and runs nothing', async (t) => {
    named(t);
    const name = '<img src=x onerror=alert(1)>';
    const description = '<script>alert(2)</script><b>gras</b>';
    const item = await api.create({ name, description });
    const page = await openPage();
    const li = itemLi(page, item.id);
    assert.equal(await li.locator('.item-name').textContent(), name);
    assert.equal(await li.locator('.item-description').textContent(), description);
    assert.equal(await page.locator('img').count(), 0, 'no <img> element');
    assert.equal(await page.locator('#items-list script, #items-list b').count(), 0);
    // The same text in edit mode (form fields and the accessible button labels).
    await enterToken(page, stack.apiToken);
    await li.locator('button[data-action="edit"]').click();
    assert.equal(await page.locator(`#edit-${item.id}-name`).inputValue(), name);
    await page.locator(`#edit-${item.id}-name`).press('Escape');
    assert.equal(await page.locator('img').count(), 0, 'no <img> element');
    // An <img src=x> would have fetched /x at once, and alert() would open a dialog.
    assert.ok(!recorder.requests.some((u) => new URL(u).pathname === '/x'), 'no request for /x');
    assert.ok(!recorder.problems.some((p) => p.kind === 'dialog'), 'no dialog');
    await page.context().close();
  });

  test('250 more items: the first page at once, the others as the list is scrolled, in order, once each', async (t) => {
    named(t);
    const wanted = Array.from({ length: 250 }, (_, i) => ({ name: `Élément paginé n°${i + 1}`, description: `Numéro ${i + 1} sur 250, créé pour tester la pagination.` }));
    const created = await createMany(api, wanted);
    const page = await newPage();
    const lists = []; // every GET /items (a page of the list) this page sent
    page.on('request', (req) => {
      if (req.method() === 'GET' && new URL(req.url()).pathname === '/items') lists.push(req.url());
    });
    const listRequests = () => lists;
    await page.goto(stack.baseUrl + '/');
    await waitForList(page);
    await page.waitForTimeout(1000); // time for any page the observer would ask for by itself
    assert.equal(listRequests().length, 1, 'one page of /items before any scroll (the first fills the screen)');
    assert.equal(await page.locator('#items-list > li').count(), PAGE_SIZE);
    assert.equal(await page.locator('#items-count').textContent(), `(${PAGE_SIZE} éléments et plus)`);
    assert.equal(await page.locator('#items-state').textContent(), `${PAGE_SIZE} éléments chargés, d’autres suivent.`);
    assert.equal(await page.locator('#items-end').isVisible(), false);

    // An item created from the page while more pages follow: shown at once, last.
    await enterToken(page, stack.apiToken);
    const mine = await createThroughForm(page, 'Ajouté avant la fin du défilement', 'Doit rester unique et à sa place.');
    assert.equal(await page.locator('#items-list > li').last().getAttribute('data-id'), String(mine.id));
    await page.locator('#token-clear').click();

    // Scrolling to the end of the list loads the rest, a page per scroll.
    const total = (await api.all()).length;
    assert.ok(total > 2 * PAGE_SIZE, `${total} items: more than two pages`);
    await page.locator('#items-title').focus(); // End scrolls the page, not a field
    for (let i = 0; i < 20 && !(await page.locator('#items-end').isVisible()); i++) {
      const shown = await page.locator('#items-list > li').count();
      await pressEnd(page);
      await eventually(async () => assert.ok(
        await page.locator('#items-list > li').count() > shown || await page.locator('#items-end').isVisible(), 'the scroll loaded a page'));
    }
    assert.equal(await page.locator('#items-end').isVisible(), true, 'the end of the list is reached');
    assert.equal(await page.locator('#items-more').isVisible(), false);
    const pages = listRequests();
    assert.equal(pages.length, Math.ceil(total / PAGE_SIZE), `pages: ${pages.join(' ')}`);
    assert.equal(new Set(pages).size, pages.length, 'no page asked twice');
    const ids = await page.locator('#items-list > li').evaluateAll((lis) => lis.map((li) => Number(li.dataset.id)));
    assert.deepEqual(ids, (await api.all()).map((i) => i.id), 'every item once, in id order');
    const shown = new Set(await page.locator('#items-list .item-name').allTextContents());
    for (const c of created) assert.ok(shown.has(c.name), `${c.name} shown`);
    assert.equal(await page.locator('#items-count').textContent(), `(${frNumber.format(total)} éléments)`);
    assert.equal(await page.locator('#items-state').textContent(), `${frNumber.format(total)} éléments chargés.`);

    // "Actualiser la liste" starts again from the first page.
    const beforeReload = listRequests().length;
    await page.locator('#items-reload').click();
    await eventually(async () => assert.equal(await page.locator('#items-list > li').count(), PAGE_SIZE));
    assert.equal(listRequests().length, beforeReload + 1);
    assert.equal(new URL(listRequests().at(-1)).search, `?limit=${PAGE_SIZE}`);
    assert.equal(await page.locator('#items-count').textContent(), `(${PAGE_SIZE} éléments et plus)`);
    await page.context().close();
  });

  test('the banner shows the database down while mariadbd is stopped, then recovers', { timeout: 5 * 60 * 1000 }, async (t) => {
    named(t);
    const page = await openPage();
    await eventually(async () => assert.equal(await page.locator('#tier-db').textContent(), 'OK'));
    let dbStopped = false;
    try {
      await recorder.allowingHttpErrors([503], async () => {
        await stack.db('stop');
        dbStopped = true;
        await eventually(async () => {
          assert.equal(await page.locator('#tier-db').textContent(), 'KO');
        }, 20000);
        assert.equal(await page.locator('#status').getAttribute('data-state'), 'error');
        assert.equal(await page.locator('#tier-front').textContent(), 'OK');
        assert.equal(await page.locator('#tier-api').textContent(), 'OK');
        assert.match(await page.locator('#status-message').textContent(), /base de données est indisponible/);
        // The list reports the outage too when asked to reload.
        await page.locator('#items-reload').click();
        await page.locator('#items-state[data-state="error"]').waitFor();
        assert.match(await page.locator('#items-state').textContent(), /Impossible de charger les éléments\. La base de données est indisponible/);
        await page.screenshot({ path: path.join(OUTPUT, 'desktop-db-down.png') });

        await stack.db('start');
        dbStopped = false;
        await eventually(async () => {
          assert.equal(await page.locator('#tier-db').textContent(), 'OK');
        }, 30000);
      });
      assert.equal(await page.locator('#status').getAttribute('data-state'), 'ok');
      assert.match(await page.locator('#status-message').textContent(), /Tout fonctionne/);
      // The list reloads by itself (its first page) once the service is back.
      await waitForList(page);
      assert.equal(await page.locator('#items-list > li').count(), Math.min(PAGE_SIZE, (await api.all()).length));
    } finally {
      if (dbStopped) await stack.db('start');
      await page.context().close();
    }
  });

  test('with the token: create, edit (with a validation error), delete', async (t) => {
    named(t);
    const page = await openPage();
    assert.equal(await page.locator('#items-list button').count(), 0);
    await enterToken(page, stack.apiToken);
    assert.equal(await page.locator('#create').isVisible(), true);
    assert.equal(await page.evaluate(() => document.activeElement.id), 'create-name');
    assert.ok(await page.locator('#items-list button[data-action="edit"]').count() > 0);

    // Create: first a description over 65535 bytes, refused next to its field.
    await recorder.allowingHttpErrors([400], async () => {
      await page.locator('#create-name').fill('Trop long');
      await page.locator('#create-description').fill('é'.repeat(32768));
      await page.getByRole('button', { name: 'Ajouter', exact: true }).click();
      await page.locator('#create-description-error').waitFor();
      assert.match(await page.locator('#create-description-error').textContent(), /^Description refusée par l’API : .*description.*Rien n’a été enregistré\.$/);
      assert.equal(await page.locator('#create-description').getAttribute('aria-invalid'), 'true');
      assert.equal(await page.locator('#create-name-error').isVisible(), false);
    });
    assert.ok(!(await api.all()).some((i) => i.name === 'Trop long'), 'nothing saved');

    // Create.
    const name = 'Coupe du Monde 2026 — à suivre';
    const created = await createThroughForm(page, name, 'Créé depuis le navigateur.\nDeuxième ligne ✓');
    assert.equal(created.description, 'Créé depuis le navigateur.\nDeuxième ligne ✓');
    const li = itemLi(page, created.id);
    assert.equal(await li.locator('.item-name').textContent(), name);
    assert.equal(await page.locator('#create-name').inputValue(), '', 'form reset');
    assert.equal(await page.locator('#create-description-error').isVisible(), false, 'old error cleared');
    assert.equal(await page.locator('#create-description').getAttribute('aria-invalid'), null);

    // Edit: a name made of white space is refused by the API, shown next to the field.
    await recorder.allowingHttpErrors([400], async () => {
      await li.locator('button[data-action="edit"]').click();
      const nameInput = page.locator(`#edit-${created.id}-name`);
      assert.equal(await nameInput.inputValue(), name);
      await nameInput.fill('   ');
      await page.getByRole('button', { name: 'Enregistrer' }).click();
      const error = page.locator(`#edit-${created.id}-name-error`);
      await error.waitFor();
      assert.match(await error.textContent(), /^Nom refusé par l’API : .+Rien n’a été enregistré\.$/);
      assert.equal(await nameInput.getAttribute('aria-invalid'), 'true');
      assert.equal(await page.evaluate(() => document.activeElement.id), `edit-${created.id}-name`);
      await page.screenshot({ path: path.join(OUTPUT, 'desktop-validation-error.png') });
    });
    assert.equal((await api.get(created.id)).data.name, name, 'nothing saved');

    // Edit for real: new name, description emptied (null).
    await page.locator(`#edit-${created.id}-name`).fill('Coupe du Monde 2026 (modifié)');
    await page.locator(`#edit-${created.id}-description`).fill('');
    await page.locator(`#edit-${created.id}-name`).press('Enter');
    await eventually(async () => assert.equal(await li.locator('.item-name').textContent(), 'Coupe du Monde 2026 (modifié)'));
    assert.equal(await li.locator('.item-description').textContent(), 'Pas de description.');
    const updated = (await api.get(created.id)).data;
    assert.equal(updated.name, 'Coupe du Monde 2026 (modifié)');
    assert.equal(updated.description, null);
    assert.equal(updated.created_at, created.created_at);
    assert.equal(await page.evaluate(() => document.activeElement.dataset.action), 'edit', 'focus back on Modifier');

    // Delete, with a confirmation step.
    await li.locator('button[data-action="delete"]').click();
    await li.locator('button[data-action="confirm-delete"]').click();
    await eventually(async () => assert.equal(await li.count(), 0));
    assert.match(await page.locator('#edit-notice').textContent(), /supprimé/);
    assert.equal((await api.get(created.id)).status, 404);
    await page.context().close();
  });

  test('over HTTPS (TLS=1, a browser trusting the local CA): list, create, edit; no mixed content, same CSP', async (t) => {
    named(t);
    assert.ok(stack.https, 'the stack serves HTTPS (run-local.sh TLS=1; for BASE_URL: HTTPS_URL and TLS_CA)');
    const { url: httpsUrl, caFile } = stack.https;

    // The chain, checked by node against the local CA alone; the same CSP as over HTTP.
    const viaNode = await httpsGet(httpsUrl + '/', caFile);
    assert.equal(viaNode.status, 200);
    assert.equal(viaNode.authorized, true, 'node verifies the certificate against the local CA');
    assert.match(viaNode.peer.issuer.CN, /^items local CA/);
    const overHttp = await fetch(stack.baseUrl + '/', { signal: AbortSignal.timeout(10000) });
    const csp = overHttp.headers.get('content-security-policy');
    assert.ok(csp, 'a CSP over HTTP');
    assert.equal(viaNode.headers['content-security-policy'], csp, 'the same CSP over HTTPS');
    assert.equal(viaNode.headers['strict-transport-security'], undefined, 'no HSTS: HTTPS_ONLY=0');

    // A browser without the CA refuses the certificate: the trust below is
    // the CA's, not certificate errors being ignored.
    const untrusting = await newPage();
    await assert.rejects(untrusting.goto(httpsUrl + '/'), /ERR_CERT_AUTHORITY_INVALID/);
    await untrusting.context().close();

    const trusting = await launchBrowser({ caFile });
    try {
      const context = await trusting.newContext({ viewport: DESKTOP, locale: 'fr-FR', timezoneId: 'Europe/Paris' });
      await recorder.attach(context);
      const mixed = [];
      context.on('console', (msg) => { if (/mixed content/i.test(msg.text())) mixed.push(msg.text()); });
      const page = await context.newPage();
      page.setDefaultTimeout(15000);
      const firstRequest = recorder.requests.length;
      const response = await page.goto(httpsUrl + '/');
      await waitForList(page);

      const security = await response.securityDetails();
      assert.match(security.issuer, /^items local CA/, `issuer: ${security.issuer}`);
      assert.match(security.protocol, /^TLS 1\.[23]$/, `protocol: ${security.protocol}`);
      assert.equal(response.headers()['content-security-policy'], csp, 'the page gets the same CSP over HTTPS');
      assert.deepEqual(await page.evaluate(() => ({
        secure: window.isSecureContext,
        protocol: location.protocol,
        next: performance.getEntriesByType('navigation')[0].nextHopProtocol,
      })), { secure: true, protocol: 'https:', next: 'h2' });

      // The list, as over HTTP: its first page.
      const count = await page.locator('#items-list > li').count();
      assert.equal(count, Math.min(PAGE_SIZE, (await api.all()).length), 'one card per item of the first page');
      await eventually(async () => assert.equal(await page.locator('#status').getAttribute('data-state'), 'ok'));

      // Create with the token, then edit.
      await enterToken(page, stack.apiToken);
      const name = 'Créé en HTTPS — « chiffré »';
      const created = await createThroughForm(page, name, 'Par TLS 1.3 et HTTP/2.');
      const li = itemLi(page, created.id);
      await li.locator('button[data-action="edit"]').click();
      await page.locator(`#edit-${created.id}-name`).fill('Modifié en HTTPS');
      await page.locator(`#edit-${created.id}-name`).press('Enter');
      await eventually(async () => assert.equal(await li.locator('.item-name').textContent(), 'Modifié en HTTPS'));
      const updated = (await api.get(created.id)).data;
      assert.equal(updated.name, 'Modifié en HTTPS');
      assert.equal(updated.description, 'Par TLS 1.3 et HTTP/2.');
      await page.screenshot({ path: path.join(OUTPUT, 'desktop-https.png') });

      // No mixed content: every request of this page went over HTTPS to the same origin.
      const requested = recorder.requests.slice(firstRequest);
      assert.ok(requested.length >= 4, `requests seen: ${requested.length}`);
      const origin = new URL(httpsUrl).origin;
      assert.deepEqual(requested.filter((u) => !u.startsWith('data:') && new URL(u).origin !== origin), [], 'requests outside the HTTPS origin');
      assert.deepEqual(mixed, [], 'mixed-content messages');
      await context.close();
    } finally {
      await trusting.close();
    }
  });

  test('two tabs change the same item: the later write gets 412, sees the current version, then succeeds', async (t) => {
    named(t);
    const CONFLICT_SAVED = 'Cet élément a été modifié entre-temps par quelqu’un d’autre : rien n’a été enregistré. Voici sa version actuelle.';
    const CONFLICT_DELETED = 'Cet élément a été modifié entre-temps par quelqu’un d’autre : rien n’a été supprimé. Voici sa version actuelle.';
    const created = await api.create({ name: 'Modifié dans deux onglets', description: 'Version d’origine' });
    const { id } = created;
    const tagOf = async () => {
      const r = await api.get(id);
      assert.equal(r.status, 200);
      const tag = r.headers.get('etag');
      assert.match(tag || '', /^"[^"]+"$/, `GET /items/${id} has a strong ETag`);
      return { item: r.data, tag };
    };
    const tag1 = (await tagOf()).tag;

    // Two tabs of one browser (sessionStorage, hence the token, is per tab).
    const pageA = await openPage();
    const context = pageA.context();
    try {
      const writes = []; // every PUT and DELETE the tabs sent, with its If-Match and status
      context.on('response', (res) => {
        const req = res.request();
        if (req.method() === 'PUT' || req.method() === 'DELETE') {
          writes.push({ method: req.method(), ifMatch: req.headers()['if-match'], status: res.status() });
        }
      });
      const pageB = await context.newPage();
      pageB.setDefaultTimeout(15000);
      await pageB.goto(stack.baseUrl + '/');
      await waitForList(pageB);
      await enterToken(pageA, stack.apiToken);
      await enterToken(pageB, stack.apiToken);
      const liA = await showItem(pageA, id);
      const liB = await showItem(pageB, id);
      const nameA = pageA.locator(`#edit-${id}-name`);
      const descA = pageA.locator(`#edit-${id}-description`);
      const nameB = pageB.locator(`#edit-${id}-name`);
      const descB = pageB.locator(`#edit-${id}-description`);

      // Both tabs open the item for editing.
      await liA.locator('button[data-action="edit"]').click();
      await liB.locator('button[data-action="edit"]').click();
      assert.equal(await nameA.inputValue(), created.name);
      assert.equal(await nameB.inputValue(), created.name);

      // A saves first: 200.
      await nameA.fill('Version de l’onglet A');
      await descA.fill('Écrite par A');
      await pageA.getByRole('button', { name: 'Enregistrer' }).click();
      await eventually(async () => assert.equal(await liA.locator('.item-name').textContent(), 'Version de l’onglet A'));
      const afterA = await tagOf();
      assert.equal(afterA.item.name, 'Version de l’onglet A');
      assert.notEqual(afterA.tag, tag1, 'a PUT gives a new ETag');

      // B saves its own change, made on the version it read before A's: 412.
      await recorder.allowingHttpErrors([412], async () => {
        await nameB.fill('Version de l’onglet B');
        await descB.fill('Écrite par B');
        await pageB.getByRole('button', { name: 'Enregistrer' }).click();
        const error = liB.locator('.form-error');
        await error.waitFor();
        assert.equal(await error.textContent(), CONFLICT_SAVED);
        assert.equal(await error.getAttribute('role'), 'alert');
      });
      await liB.scrollIntoViewIfNeeded();
      await pageB.screenshot({ path: path.join(OUTPUT, 'desktop-conflict.png') });
      const kept = await tagOf();
      assert.deepEqual(kept.item, afterA.item, 'the server keeps A’s version');
      assert.equal(kept.tag, afterA.tag);
      // B now shows A's version, and a second attempt succeeds.
      assert.equal(await nameB.inputValue(), 'Version de l’onglet A');
      assert.equal(await descB.inputValue(), 'Écrite par A');
      assert.match(await liB.locator('h3').textContent(), /Version de l’onglet A/);
      await nameB.fill('Version de l’onglet B, après relecture');
      await pageB.getByRole('button', { name: 'Enregistrer' }).click();
      await eventually(async () => assert.equal(await liB.locator('.item-name').textContent(), 'Version de l’onglet B, après relecture'));
      assert.equal(await liB.locator('.item-description').textContent(), 'Écrite par A');
      assert.equal(await liB.locator('.form-error').count(), 0);
      const afterB = await tagOf();
      assert.deepEqual(afterB.item, { ...created, name: 'Version de l’onglet B, après relecture', description: 'Écrite par A' });

      // B asks to delete it; A changes it before B confirms: 412, nothing deleted.
      await liB.locator('button[data-action="delete"]').click();
      await liB.locator('button[data-action="confirm-delete"]').waitFor();
      await liA.locator('button[data-action="edit"]').click();
      assert.equal(await nameA.inputValue(), 'Version de l’onglet B, après relecture', 'A edits the current version');
      assert.match(await liA.locator('.notice').textContent(), /modifié entre-temps/);
      await nameA.fill('Seconde version de l’onglet A');
      await pageA.getByRole('button', { name: 'Enregistrer' }).click();
      await eventually(async () => assert.equal(await liA.locator('.item-name').textContent(), 'Seconde version de l’onglet A'));
      await recorder.allowingHttpErrors([412], async () => {
        await liB.locator('button[data-action="confirm-delete"]').click();
        const error = liB.locator('.form-error');
        await error.waitFor();
        assert.equal(await error.textContent(), CONFLICT_DELETED);
      });
      const notDeleted = await tagOf();
      assert.equal(notDeleted.item.name, 'Seconde version de l’onglet A', 'not deleted, A’s version kept');
      assert.equal(await liB.locator('.item-name').textContent(), 'Seconde version de l’onglet A', 'B shows the current version');
      assert.equal(await pageB.evaluate(() => document.activeElement.dataset.action), 'delete', 'focus on Supprimer');

      // Asked again, about the version it now shows, B deletes it.
      await liB.locator('button[data-action="delete"]').click();
      await liB.locator('button[data-action="confirm-delete"]').click();
      await eventually(async () => assert.equal(await liB.count(), 0));
      assert.equal((await api.get(id)).status, 404);

      // Every write carried the ETag of the version its tab had read.
      assert.deepEqual(writes, [
        { method: 'PUT', ifMatch: tag1, status: 200 },
        { method: 'PUT', ifMatch: tag1, status: 412 },
        { method: 'PUT', ifMatch: afterA.tag, status: 200 },
        { method: 'PUT', ifMatch: afterB.tag, status: 200 },
        { method: 'DELETE', ifMatch: afterB.tag, status: 412 },
        { method: 'DELETE', ifMatch: notDeleted.tag, status: 204 },
      ]);
    } finally {
      await context.close();
    }
  });

  test('with a wrong token the user sees why nothing was saved', async (t) => {
    named(t);
    const victim = await api.create({ name: 'Ne doit pas disparaître', description: null });
    const page = await openPage();
    await enterToken(page, 'jeton-incorrect-0123456789');
    await recorder.allowingHttpErrors([401], async () => {
      const name = 'Ne doit pas être enregistré';
      await page.locator('#create-name').fill(name);
      await page.getByRole('button', { name: 'Ajouter', exact: true }).click();
      const error = page.locator('#create .form-error');
      await error.waitFor();
      assert.match(await error.textContent(), /Jeton refusé.*Rien n’a été enregistré/);
      assert.equal(await error.getAttribute('role'), 'alert');
      assert.ok(!(await api.all()).some((i) => i.name === name), 'nothing created');

      const li = await showItem(page, victim.id);
      await li.locator('button[data-action="delete"]').click();
      await li.locator('button[data-action="confirm-delete"]').click();
      await li.locator('.form-error').waitFor();
      assert.match(await li.locator('.form-error').textContent(), /Jeton refusé.*Rien n’a été supprimé/);
      assert.equal((await api.get(victim.id)).status, 200, 'nothing deleted');
    });
    // Leaving editing mode forgets the token and removes every control.
    await page.locator('#token-clear').click();
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    assert.equal(await page.locator('#items-list button').count(), 0);
    assert.equal(await page.locator('#create').isVisible(), false);
    await page.context().close();
  });

  test('writes disabled on the server (no token configured): the user sees why', { timeout: 16 * 60 * 1000 }, async (t) => {
    named(t);
    const locked = await startStack({ logsDir: path.join(OUTPUT, 'stack-logs-no-token'), noToken: true });
    const lockedApi = apiClient(locked.baseUrl, 'un-jeton-quelconque');
    let context;
    try {
      context = await browser.newContext({ viewport: DESKTOP, locale: 'fr-FR', timezoneId: 'Europe/Paris' });
      await recorder.attach(context);
      const page = await context.newPage();
      await page.goto(locked.baseUrl + '/');
      await waitForList(page);
      const [first] = await lockedApi.all();
      await enterToken(page, 'un-jeton-quelconque');
      await recorder.allowingHttpErrors([403], async () => {
        await page.locator('#create-name').fill('Refusé : écritures désactivées');
        await page.getByRole('button', { name: 'Ajouter', exact: true }).click();
        await page.locator('#create .form-error').waitFor();
        assert.match(await page.locator('#create .form-error').textContent(), /modifications sont désactivées.*Rien n’a été enregistré/);
        const li = itemLi(page, first.id);
        await li.locator('button[data-action="edit"]').click();
        await page.locator(`#edit-${first.id}-name`).fill('Modifié ?');
        await page.getByRole('button', { name: 'Enregistrer' }).click();
        await li.locator('.form-error').waitFor();
        assert.match(await li.locator('.form-error').textContent(), /modifications sont désactivées.*Rien n’a été enregistré/);
      });
      const items = await lockedApi.all();
      assert.equal(items.length, 5, 'nothing created');
      assert.equal(items[0].name, first.name, 'nothing changed');
    } finally {
      // Closed even on a failure: its page would go on polling the stopped stack.
      if (context) await context.close();
      await locked.stop();
    }
  });

  test('page logic on stubbed answers: loading, empty list, API down, server unreachable', async (t) => {
    named(t);
    const json = (status, body) => ({ status, contentType: 'application/json', body: JSON.stringify(body) });

    // Loading, then empty.
    let page = await newPage();
    let release;
    const held = new Promise((resolve) => { release = resolve; });
    await page.route('**/items?*', async (route) => { await held; await route.fulfill(json(200, [])); });
    await page.goto(stack.baseUrl + '/');
    await page.locator('#items-state[data-state="loading"]').waitFor();
    assert.equal(await page.locator('#items-state').textContent(), 'Chargement des éléments…');
    assert.equal(await page.locator('#items-list').getAttribute('aria-busy'), 'true');
    release();
    await page.locator('#items-state[data-state="empty"]').waitFor();
    assert.equal(await page.locator('#items-state').textContent(), 'Aucun élément pour le moment.');
    assert.equal(await page.locator('#items-count').textContent(), '(aucun élément)');
    await page.context().close();

    await recorder.allowingHttpErrors([502, 'net::ERR_FAILED'], async () => {
      // The API tier down (nginx answers 502), then back: the page recovers by itself.
      page = await newPage();
      const apiDown = (route) => route.fulfill(json(502, { error: 'bad gateway' }));
      await page.route('**/status', apiDown);
      await page.route('**/items?*', apiDown);
      await page.goto(stack.baseUrl + '/');
      await page.locator('#items-state[data-state="error"]').waitFor();
      await eventually(async () => assert.equal(await page.locator('#tier-api').textContent(), 'KO'));
      assert.equal(await page.locator('#tier-front').textContent(), 'OK');
      assert.equal(await page.locator('#tier-db').textContent(), 'inconnu');
      assert.match(await page.locator('#status-message').textContent(), /L’API ne répond pas/);
      assert.match(await page.locator('#items-state').textContent(), /Impossible de charger les éléments\. L’API ne répond pas/);
      await page.unroute('**/status', apiDown);
      await page.unroute('**/items?*', apiDown);
      await eventually(async () => assert.equal(await page.locator('#tier-api').textContent(), 'OK'), 15000);
      await waitForList(page);
      await page.context().close();

      // Nothing answers at all.
      page = await newPage();
      await page.route('**/status', (route) => route.abort('failed'));
      await page.goto(stack.baseUrl + '/');
      await eventually(async () => assert.equal(await page.locator('#tier-front').textContent(), 'KO'));
      assert.match(await page.locator('#status-message').textContent(), /Le serveur est injoignable/);
      await page.context().close();
    });
  });

  test('screenshots at desktop and phone widths; no horizontal scrolling on a phone', async (t) => {
    named(t);
    for (const [label, viewport] of [['desktop', DESKTOP], ['phone', PHONE]]) {
      const page = await openPage(viewport);
      await eventually(async () => assert.equal(await page.locator('#status').getAttribute('data-state'), 'ok'));
      await page.screenshot({ path: path.join(OUTPUT, `${label}.png`) });
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      assert.equal(overflow, 0, `${label}: no horizontal overflow`);
      await enterToken(page, stack.apiToken);
      await page.locator('#token-clear').scrollIntoViewIfNeeded();
      await page.screenshot({ path: path.join(OUTPUT, `${label}-editing.png`) });
      assert.equal(await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth), 0);
      await page.context().close();
    }
  });

  test('the watchers see a console error, a page error, a dialog and a CSP violation', async (t) => {
    named(t);
    // A recorder of this test's own: what it provokes on purpose is not a
    // problem of this run, and proves that the check after each test can fail.
    const probe = new Recorder();
    const context = await browser.newContext({ viewport: DESKTOP });
    await probe.attach(context);
    try {
      const page = await context.newPage();
      await page.goto(stack.baseUrl + '/');
      await waitForList(page);
      await page.evaluate(() => {
        console.error('provoked console error');
        setTimeout(() => { throw new Error('provoked page error'); }, 0);
        window.alert('provoked dialog');
        const inline = document.createElement('script');
        inline.textContent = 'window.provoked = 1;';
        document.body.append(inline);
      });
      await eventually(() => {
        const kinds = new Set(probe.problems.map((p) => p.kind));
        for (const kind of ['console error', 'page error', 'dialog', 'CSP violation']) {
          assert.ok(kinds.has(kind), `${kind} not seen: ${JSON.stringify(probe.problems)}`);
        }
      });
      assert.equal(await page.evaluate(() => window.provoked), undefined, 'the inline script ran');
      assert.ok(probe.requests.length > 0, 'the watchers saw the traffic');
    } finally {
      await context.close();
    }
    t.diagnostic(`the whole run: ${recorder.requests.length} requests, all to loopback; ${recorder.expected.length} browser lines for errors provoked on purpose`);
  });
});
