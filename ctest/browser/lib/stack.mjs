// The stack under test: either one started here with scripts/run-local.sh on
// free loopback ports (the default), or one already running that the
// environment describes (BASE_URL, API_TOKEN, RUN_DIR and the port variables).

import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const RUN_LOCAL = process.env.RUN_LOCAL || path.join(REPO_ROOT, 'scripts', 'run-local.sh');

// The HTTPS listener of a stack started with TLS=1 (run-local.sh): its URL
// and the local CA its certificate comes from, or null.
function httpsOf(runDir) {
  if (!runDir || !existsSync(path.join(runDir, 'env'))) return null;
  const env = readFileSync(path.join(runDir, 'env'), 'utf8');
  if (!/^SAVED_TLS=1$/m.test(env)) return null;
  return { url: `https://127.0.0.1:${savedPort(runDir, 'TLS_PORT')}`, caFile: path.join(runDir, 'tls', 'ca.pem') };
}

// A port run-local.sh chose for an "auto" one, from RUN_DIR/env.
function savedPort(runDir, name) {
  const saved = readFileSync(path.join(runDir, 'env'), 'utf8').match(new RegExp(`^SAVED_${name}=(\\d+)$`, 'm'));
  if (!saved) throw new Error(`no ${name} saved in ${runDir}/env`);
  return Number(saved[1]);
}

// Runs run-local.sh with `args`; resolves with its output, rejects on a
// non-zero exit or after `timeoutMs` (the child is then sent SIGTERM).
function runLocal(env, args, timeoutMs) {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [RUN_LOCAL, ...args], { env, cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => { output += chunk; });
    child.stderr.on('data', (chunk) => { output += chunk; });
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      reject(new Error(`run-local.sh ${args.join(' ')} did not finish within ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    child.on('error', (err) => { clearTimeout(timer); reject(err); });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(output);
      else reject(new Error(`run-local.sh ${args.join(' ')} exited with ${code ?? signal}:\n${output}`));
    });
  });
}

// `logsDir` receives the stack's logs when a stack started here is stopped.
// `noToken` starts one here with no token configured (writes answer 403),
// whatever BASE_URL says; so does `own` (e.g. a test that fills the table
// through the database's socket). The stack started here also serves HTTPS
// (`tls`, by default unless `noToken`: TLS=1, a free TLS_PORT): `stack.https`
// is then { url, caFile }; for a stack given by BASE_URL, HTTPS_URL and TLS_CA
// name them (else RUN_DIR/env does, when that stack was started with TLS=1),
// and `stack.https` is null without.
// Interrupted (Ctrl-C, timeout): still stop the stack a test file started.
// currentStack() gives it (none yet: nothing to stop) when the signal comes.
export function stopStackOnSignal(currentStack) {
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => {
      const stack = currentStack();
      const stopping = stack ? stack.stop() : Promise.resolve();
      stopping.finally(() => process.exit(130));
    });
  }
}

export async function startStack({ logsDir, noToken = false, own = noToken, tls = !noToken } = {}) {
  if (process.env.BASE_URL && !own) {
    const runDir = process.env.RUN_DIR || '';
    let apiToken = process.env.API_TOKEN || '';
    if (!apiToken && runDir && existsSync(path.join(runDir, 'api-token'))) {
      apiToken = readFileSync(path.join(runDir, 'api-token'), 'utf8').trim();
    }
    if (!apiToken) throw new Error('BASE_URL is set: API_TOKEN (or RUN_DIR holding api-token) must be set too');
    const env = { ...process.env };
    const stack = makeStack({ baseUrl: process.env.BASE_URL.replace(/\/+$/, ''), apiToken, runDir, env, owned: false, logsDir });
    if (process.env.HTTPS_URL) {
      if (!process.env.TLS_CA) throw new Error('HTTPS_URL is set: TLS_CA (the CA certificate of that listener) must be set too');
      stack.https = { url: process.env.HTTPS_URL.replace(/\/+$/, ''), caFile: process.env.TLS_CA };
    } else {
      stack.https = httpsOf(runDir);
    }
    return stack;
  }
  const runDir = mkdtempSync(path.join(os.tmpdir(), 'items-browser-'));
  const apiToken = noToken ? '' : randomBytes(24).toString('hex');
  const env = {
    ...process.env,
    RUN_DIR: runDir,
    // run-local.sh chooses free ports (again if one is taken meanwhile).
    HTTP_PORT: 'auto',
    METRICS_PORT: 'auto',
    DB_PORT: 'auto',
    FCGI_PORT: 'auto',
    // HTTPS beside HTTP, as the front container serves it (the page is
    // tested over both); the local CA is made under RUN_DIR/tls.
    TLS: tls ? '1' : '0',
    TLS_PORT: 'auto',
    API_TOKEN: apiToken,
  };
  delete env.BASE_URL;
  if (noToken) {
    env.NO_TOKEN = '1';
    delete env.API_TOKEN;
  } else {
    delete env.NO_TOKEN;
  }
  const stack = makeStack({ baseUrl: '', apiToken, runDir, env, owned: true, logsDir });
  try {
    await runLocal(env, ['--detach'], 15 * 60 * 1000);
    stack.baseUrl = `http://127.0.0.1:${savedPort(runDir, 'HTTP_PORT')}`;
    stack.https = httpsOf(runDir);
    // --db start and --stop act on the ports this start chose.
    for (const name of ['HTTP_PORT', 'METRICS_PORT', 'DB_PORT']) env[name] = String(savedPort(runDir, name));
    if (stack.https) env.TLS_PORT = String(savedPort(runDir, 'TLS_PORT'));
  } catch (err) {
    await stack.stop().catch(() => {});
    throw new Error(`${err.message}\n(stack logs copied to ${logsDir})`);
  }
  return stack;
}

function makeStack({ baseUrl, apiToken, runDir, env, owned, logsDir }) {
  return {
    baseUrl,
    https: null,
    apiToken,
    runDir,
    owned,
    // Takes only mariadbd down or up (outage drill).
    db: (action) => runLocal(env, ['--db', action], 3 * 60 * 1000),
    // Runs SQL (`input`, fed to the client's stdin) on the items database as
    // MariaDB's root, through RUN_DIR/db/mysql.sock (unix_socket
    // authentication: the OS user must be root, as for run-local.sh itself);
    // resolves with the tab-separated output.
    sql(input, timeoutMs = 5 * 60 * 1000) {
      if (!runDir) return Promise.reject(new Error('sql(): no RUN_DIR, hence no database socket'));
      const args = ['--no-defaults', `--socket=${path.join(runDir, 'db', 'mysql.sock')}`, '-uroot', '-N', '-B', 'items'];
      return new Promise((resolve, reject) => {
        const child = execFile('mariadb', args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
          if (err) reject(new Error(`mariadb: ${err.message}\n${stderr}`));
          else resolve(stdout);
        });
        child.stdin.on('error', () => {}); // the exit status tells
        child.stdin.end(input);
      });
    },
    // Stops a stack started here, keeps its logs under `logsDir`, and removes
    // its RUN_DIR (kept when KEEP_RUN_DIR=1).
    async stop() {
      if (!owned) return;
      await runLocal(env, ['--stop'], 2 * 60 * 1000);
      if (logsDir && existsSync(path.join(runDir, 'logs'))) {
        rmSync(logsDir, { recursive: true, force: true });
        cpSync(path.join(runDir, 'logs'), logsDir, { recursive: true });
      }
      if (process.env.KEEP_RUN_DIR !== '1') rmSync(runDir, { recursive: true, force: true });
    },
  };
}
