// Debian's Chromium driven by playwright-core, with watchers that record every
// console error, page error, dialog, CSP violation and non-loopback request.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

// `caFile`: a CA certificate (PEM) this browser trusts for servers, as a user
// would add it: Chromium on Linux reads the user's trust settings from the
// NSS database in $HOME/.pki/nssdb, so the browser gets a HOME of its own
// (removed when it closes) whose database holds that CA, trusted for TLS
// servers only ("C,,"). Certificate errors are never ignored.
export function launchBrowser({ caFile } = {}) {
  let home = null;
  const env = { ...process.env };
  if (caFile) {
    home = mkdtempSync(path.join(os.tmpdir(), 'items-browser-home-'));
    const db = `sql:${path.join(home, '.pki', 'nssdb')}`;
    try {
      mkdirSync(path.join(home, '.pki', 'nssdb'), { recursive: true });
      execFileSync('certutil', ['-N', '-d', db, '--empty-password'], { stdio: 'pipe' });
      execFileSync('certutil', ['-A', '-d', db, '-n', 'items local CA', '-t', 'C,,', '-i', caFile], { stdio: 'pipe' });
    } catch (err) {
      rmSync(home, { recursive: true, force: true });
      if (err.code === 'ENOENT') throw new Error('certutil is missing: apt-get install libnss3-tools');
      throw err;
    }
    env.HOME = home;
  }
  // playwright gives every launch a fresh temporary user-data-dir.
  const launched = chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    env,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  if (!home) return launched;
  return launched.then((browser) => {
    browser.on('disconnected', () => rmSync(home, { recursive: true, force: true }));
    return browser;
  }, (err) => {
    rmSync(home, { recursive: true, force: true });
    throw err;
  });
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

// What the watchers saw during the whole run.
export class Recorder {
  constructor() {
    this.problems = []; // each: { kind, test, text }
    this.expected = []; // HTTP error lines a test provoked on purpose
    this.requests = []; // every URL the browser asked for
    this.allowedStatuses = new Set();
    this.test = '(setup)';
  }

  // Runs `fn` with the browser's "Failed to load resource: ..." console lines
  // accepted for these statuses (numbers) or network errors ('net::ERR_FAILED'):
  // Chromium prints one for every non-2xx fetch response, e.g. the 503 of
  // /status during a DB outage. Every other console error still counts.
  async allowingHttpErrors(statuses, fn) {
    this.allowedStatuses = new Set(statuses);
    try {
      return await fn();
    } finally {
      this.allowedStatuses = new Set();
    }
  }

  add(kind, text) {
    this.problems.push({ kind, test: this.test, text });
  }

  // Each test answers for its own pages (an afterEach): nothing seen while it ran.
  assertNoProblemsInTest() {
    const mine = this.problems.filter((p) => p.test === this.test);
    const report = mine.map((p) => `${p.kind}: ${p.text}`).join('\n');
    assert.equal(mine.length, 0, `problems seen during "${this.test}":\n${report}`);
  }

  async attach(context) {
    await context.route('**/*', (route) => {
      const url = new URL(route.request().url());
      this.requests.push(url.href);
      if (url.protocol === 'data:' || LOOPBACK.has(url.hostname)) return route.continue();
      this.add('non-loopback request', url.href);
      return route.abort('blockedbyclient');
    });
    await context.exposeBinding('__reportCspViolation', (_source, v) => {
      this.add('CSP violation', JSON.stringify(v));
    });
    await context.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (e) => {
        window.__reportCspViolation({
          directive: e.violatedDirective,
          blocked: e.blockedURI,
          source: e.sourceFile,
          line: e.lineNumber,
          sample: e.sample,
        });
      });
    });
    context.on('page', (page) => this.watchPage(page));
  }

  watchPage(page) {
    page.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      const text = msg.text();
      const http = /^Failed to load resource: (?:the server responded with a status of (\d{3})|(net::[A-Z_]+))/.exec(text);
      if (http && this.allowedStatuses.has(http[1] ? Number(http[1]) : http[2])) {
        this.expected.push({ test: this.test, text });
        return;
      }
      this.add('console error', `${text} (${msg.location().url || 'no location'})`);
    });
    page.on('pageerror', (err) => this.add('page error', String(err && err.stack ? err.stack : err)));
    page.on('dialog', (dialog) => {
      this.add('dialog', `${dialog.type()}: ${dialog.message()}`);
      dialog.dismiss().catch(() => {});
    });
    page.on('crash', () => this.add('crash', page.url()));
  }
}

// Presses End once the page has stopped scrolling: Chromium scrolls smoothly,
// and an End pressed during that animation goes to the end as it was when
// the animation began (before the page just loaded), i.e. nowhere.
// A suite's teardown: the browser first (it may still hold pages of the
// stack), then the stack, stopped even when closing the browser failed.
export async function closeBrowserAndStack(browser, stack) {
  try {
    if (browser) await browser.close();
  } finally {
    if (stack) await stack.stop();
  }
}

export async function pressEnd(p) {
  for (let last = -1; ;) {
    const y = await p.evaluate(() => window.scrollY);
    if (y === last) break;
    last = y;
    await p.waitForTimeout(100);
  }
  await p.keyboard.press('End');
}

// Retries `check` (an async assertion) until it passes or `timeoutMs` ends.
export async function eventually(check, timeoutMs = 10000, intervalMs = 100) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() >= deadline) throw err;
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
