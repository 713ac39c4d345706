// The web console in a real browser (Debian's chromium, driven by
// playwright-core), against a real gateway, with real `keygate node`
// processes. Run by tests/console.rs, which starts the gateway and sets:
//
//   KEYGATE_CONSOLE_URL   the admin listener, e.g. http://127.0.0.1:7800
//   KEYGATE_TOKEN         a live operator's token (operator "alice")
//   KEYGATE_BIN           the keygate binary
//   KEYGATE_NODE_DIR      a fresh state dir for the node (and NODE_DIR-2
//                         for a second device, whose request is rejected)
//   KEYGATE_GATEWAY_ADDR  the gateway's UDP address (for a PIN)
//   KEYGATE_SCREENSHOTS   where the screenshots go
//   KEYGATE_CHROMIUM      the browser (default /usr/bin/chromium)
//   KEYGATE_BROWSER_PROFILE  a fresh --user-data-dir
//
// Plain node, no test runner: exits 0 when every step held, 1 otherwise.
// Prints "screenshot PATH" per screenshot and "paired device ID".

import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const WAIT = 30_000;
const TOTAL = 200_000;

function need(name, fallback) {
  const value = process.env[name] || fallback;
  if (!value) {
    console.error(`${name} is not set: run this through tests/console.rs (cargo test -p keygate-tests --test console)`);
    process.exit(2);
  }
  return value;
}

const BASE = need('KEYGATE_CONSOLE_URL');
const TOKEN = need('KEYGATE_TOKEN');
const BIN = need('KEYGATE_BIN');
const NODE_DIR = need('KEYGATE_NODE_DIR');
const GATEWAY = need('KEYGATE_GATEWAY_ADDR');
const SHOTS = need('KEYGATE_SCREENSHOTS');
const CHROMIUM = need('KEYGATE_CHROMIUM', '/usr/bin/chromium');
const PROFILE = need('KEYGATE_BROWSER_PROFILE');

const children = [];
setTimeout(() => {
  console.error(`console test: took longer than ${TOTAL / 1000} s`);
  for (const c of children) c.kill('SIGKILL');
  process.exit(1);
}, TOTAL).unref();

function check(cond, message) {
  if (!cond) throw new Error(`check failed: ${message}`);
}

function step(text) {
  console.log(`step: ${text}`);
}

// ---------- keygate processes ----------

class Keygate {
  constructor(args, env = {}) {
    this.args = args;
    this.out = '';
    this.lines = [];
    this.waiters = [];
    this.child = spawn(BIN, args, {
      env: { ...process.env, KEYGATE_LOG: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(this.child);
    this.child.stdout.on('data', (d) => { this.out += d; });
    let partial = '';
    this.child.stderr.on('data', (d) => {
      partial += d;
      const parts = partial.split('\n');
      partial = parts.pop();
      for (const line of parts) {
        this.lines.push(line);
        for (const w of this.waiters.slice()) w(line);
      }
    });
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }

  // The first stderr line matching `re`, seen already or to come.
  line(re, timeout = WAIT) {
    const seen = this.lines.find((l) => re.test(l));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(
        `keygate ${this.args.join(' ')} never logged ${re}:\n${this.lines.join('\n')}`)), timeout);
      const w = (l) => {
        if (re.test(l)) {
          clearTimeout(timer);
          this.waiters.splice(this.waiters.indexOf(w), 1);
          resolve(l);
        }
      };
      this.waiters.push(w);
    });
  }

  async exit(timeout = WAIT) {
    let timer;
    const code = await Promise.race([
      this.exited,
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(
        `keygate ${this.args.join(' ')} did not exit within ${timeout} ms:\n${this.lines.join('\n')}`)), timeout); }),
    ]);
    clearTimeout(timer);
    return code;
  }
}

// ---------- the browser ----------

let shotNo = 0;
async function shot(page, name) {
  shotNo += 1;
  const file = path.join(SHOTS, `${String(shotNo).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot ${file}`);
}

// fetch() from the page, as its own script would, but with headers of the
// test's choosing.
function pageFetch(page, method, url, body, headers = {}) {
  return page.evaluate(async ({ method, url, body, headers }) => {
    const res = await fetch(url, {
      method,
      credentials: 'same-origin',
      headers: body === undefined ? headers : { 'Content-Type': 'application/json', ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json = null;
    try { json = JSON.parse(text); } catch { /* not JSON */ }
    return { status: res.status, json, text };
  }, { method, url, body, headers });
}

async function main() {
  mkdirSync(SHOTS, { recursive: true });
  const context = await chromium.launchPersistentContext(PROFILE, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport: { width: 1280, height: 900 },
  });
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(WAIT);
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) {
      problems.push(`CSP: ${m.text()}`);
    }
  });
  let pair = null;
  let run = null;
  try {
    // ---- log in: a wrong token is refused, the right one gets a session
    step('the login page');
    const first = await page.goto(`${BASE}/`);
    check(first.status() === 200, `GET / answered ${first.status()}`);
    const csp = first.headers()['content-security-policy'] || '';
    check(csp.startsWith("default-src 'self'"), `CSP: ${csp}`);
    await page.locator('#login-view').waitFor({ state: 'visible' });
    await shot(page, 'login');

    step('a wrong token is refused');
    await page.fill('#token', `kgo_${'0'.repeat(64)}`);
    await page.click('#login-form button[type=submit]');
    await page.locator('#login-error', { hasText: 'Refused' }).waitFor();
    check(await page.locator('#console-view').isHidden(), 'the console stays hidden after a wrong token');
    check((await context.cookies(BASE)).length === 0, 'no cookie for a wrong token');
    await shot(page, 'login-refused');

    step('the right token logs in');
    await page.fill('#token', TOKEN);
    await page.click('#login-form button[type=submit]');
    await page.locator('#whoami', { hasText: 'alice' }).waitFor();
    await page.locator('#console-view').waitFor({ state: 'visible' });
    const cookies = await context.cookies(BASE);
    const session = cookies.find((c) => c.name === 'keygate_session');
    check(session, `a session cookie: ${JSON.stringify(cookies)}`);
    check(session.httpOnly && session.sameSite === 'Strict' && session.path === '/' && !session.secure,
      `cookie attributes: ${JSON.stringify(session)}`);
    check(await page.evaluate(() => document.cookie) === '', 'scripts cannot read the session cookie');
    // The event stream (GET /api/v1/events) connects with the session cookie.
    await page.locator('#live', { hasText: /^live$/ }).waitFor();
    await shot(page, 'logged-in');

    // ---- mint a QR code: the image and its countdown
    step('mint a QR code');
    await page.selectOption('#mint-kind', 'qr');
    await page.fill('#mint-ttl', '10m');
    await page.click('#mint');
    const qr = page.locator('#code-qr svg');
    await qr.waitFor({ state: 'visible' });
    const box = await qr.boundingBox();
    check(box && box.width > 100 && box.height > 100, `the QR image has a size: ${JSON.stringify(box)}`);
    const dark = await page.locator('#code-qr svg path').getAttribute('d');
    check(dark && dark.length > 100, 'the QR image has modules');
    const uri = (await page.textContent('#code-uri')).trim();
    check(uri.startsWith('keygate://'), `the URI: ${uri}`);
    const t1 = await page.textContent('#code-countdown');
    check(/^(10:00|9:5\d)$/.test(t1), `countdown starts near 10:00: ${t1}`);
    await page.waitForFunction((t) => document.getElementById('code-countdown').textContent !== t, t1);
    const t2 = await page.textContent('#code-countdown');
    const secs = (t) => { const [m, s] = t.split(':').map(Number); return m * 60 + s; };
    check(/^\d+:\d\d$/.test(t2) && secs(t2) < secs(t1), `countdown goes down: ${t1} then ${t2}`);
    await shot(page, 'qr-code');

    // ---- CSRF: a change from the page without the header is refused
    step('a change without X-CSRF-Token is refused and changes nothing');
    const before = await pageFetch(page, 'GET', '/api/v1/codes');
    check(before.status === 200 && before.json.length === 1, `one live code: ${before.text}`);
    const forged = await pageFetch(page, 'POST', '/api/v1/codes', { kind: 'pin' });
    check(forged.status === 403, `POST without the CSRF token: ${forged.status} ${forged.text}`);
    check(forged.json && forged.json.error === 'csrf' && /X-CSRF-Token/.test(forged.json.message),
      `a clear error: ${forged.text}`);
    const wrong = await pageFetch(page, 'POST', '/api/v1/codes', { kind: 'pin' }, { 'X-CSRF-Token': '0'.repeat(64) });
    check(wrong.status === 403, `POST with a wrong CSRF token: ${wrong.status} ${wrong.text}`);
    const after = await pageFetch(page, 'GET', '/api/v1/codes');
    check(after.status === 200 && after.json.length === 1, `still one live code: ${after.text}`);

    // ---- a real device pairs with the QR code; approve it in one click
    step('keygate node pair files a request');
    pair = new Keygate(['node', 'pair', '--state-dir', NODE_DIR, '--name', 'kitchen-pi'],
      { KEYGATE_PAIRING_CODE: uri });
    const line = await pair.line(/check code:/);
    const checkCode = line.trim().split(/\s+/)[2];
    check(checkCode, `a check code in: ${line}`);
    const row = page.locator('#requests tbody tr', { hasText: checkCode });
    await row.waitFor({ state: 'visible' }); // no reload: events or polling
    const cells = await row.locator('td').allTextContents();
    check(cells[1] === 'kitchen-pi', `the name: ${cells}`);
    check(cells[3] === 'QR', `the method: ${cells}`);
    check(/^127\.0\.0\.1:\d+$/.test(cells[4]), `the source address: ${cells}`);
    const deviceId = await row.getAttribute('data-device-id');
    check(deviceId && deviceId.startsWith('kgd'), `a device id: ${deviceId}`);
    // The QR code was single use: the panel says it is used up.
    await page.locator('#code-countdown', { hasText: 'a device proved it' }).waitFor();
    check(await page.locator('#code-qr').isHidden(), 'a used QR code is no longer shown');
    await shot(page, 'request-pending');

    step('approve in one click');
    await row.locator('button.approve').click();
    const pairCode = await pair.exit();
    check(pairCode === 0, `node pair exits 0, not ${pairCode}:\n${pair.lines.join('\n')}`);
    check(pair.out.trim() === deviceId, `node pair prints the device id: ${pair.out}`);
    console.log(`paired device ${deviceId}`);
    await row.waitFor({ state: 'detached' });
    await page.locator(`#devices tbody tr[data-device-id="${deviceId}"]`).waitFor();
    await page.locator(`#certificates tbody tr[data-device-id="${deviceId}"]`).waitFor();
    await shot(page, 'approved');

    // ---- the node runs: it appears among the connected nodes
    step('keygate node run appears in the nodes list');
    run = new Keygate(['node', 'run', '--state-dir', NODE_DIR]);
    const nodeRow = page.locator(`#nodes tbody tr[data-device-id="${deviceId}"]`);
    await nodeRow.waitFor({ state: 'visible' });
    const heartbeat = await nodeRow.locator('td.heartbeat').textContent();
    check(/ago|just now/.test(heartbeat), `a last heartbeat: ${heartbeat}`);
    await shot(page, 'node-connected');

    // ---- revoke the device: the node leaves the list
    step('revoke the device; the node leaves');
    page.once('dialog', (d) => d.accept());
    await page.locator(`#devices tbody tr[data-device-id="${deviceId}"] button.revoke`).click();
    await nodeRow.waitFor({ state: 'detached' });
    await page.locator(`#devices tbody tr.revoked[data-device-id="${deviceId}"]`).waitFor();
    const runCode = await run.exit();
    check(runCode === 3, `node run exits 3 when revoked, not ${runCode}:\n${run.lines.slice(-10).join('\n')}`);
    await shot(page, 'device-revoked');

    // ---- a PIN: a second device pairs with it and is rejected with a reason
    step('mint a PIN; a second device files a request; reject it with a reason');
    await page.selectOption('#mint-kind', 'pin');
    await page.fill('#mint-ttl', '5m');
    await page.click('#mint');
    const pinBox = page.locator('#code-pin');
    await pinBox.waitFor({ state: 'visible' });
    const pin = (await pinBox.textContent()).trim();
    check(/^[0-9 -]{6,}$/.test(pin), `a PIN: ${pin}`);
    check(await page.locator('#code-qr').isHidden(), 'the QR image is not shown with a PIN');
    await page.locator('#code-countdown', { hasText: /^[45]:\d\d$/ }).waitFor();
    await shot(page, 'pin-code');
    const intruder = new Keygate(['node', 'pair', '--gateway', GATEWAY, '--state-dir', `${NODE_DIR}-2`,
      '--name', 'intruder'], { KEYGATE_PAIRING_CODE: pin });
    const intruderCode = (await intruder.line(/check code:/)).trim().split(/\s+/)[2];
    const intruderRow = page.locator('#requests tbody tr', { hasText: intruderCode });
    await intruderRow.waitFor({ state: 'visible' });
    check((await intruderRow.locator('td').nth(3).textContent()) === 'PIN', 'the method is PIN');
    page.once('dialog', (d) => d.accept('not ours'));
    await intruderRow.locator('button.reject').click();
    const intruderExit = await intruder.exit();
    check(intruderExit === 1, `a rejected node pair exits 1, not ${intruderExit}`);
    check(intruder.lines.some((l) => l.includes('rejected') && l.includes('not ours')),
      `the device is told the reason:\n${intruder.lines.join('\n')}`);
    await intruderRow.waitFor({ state: 'detached' });

    // ---- the audit log
    step('the audit log');
    const audit = await pageFetch(page, 'GET', '/api/v1/audit');
    check(audit.status === 200, `GET /api/v1/audit: ${audit.status} ${audit.text}`);
    for (const action of ['code_minted', 'request_filed', 'request_approved', 'request_rejected', 'device_revoked']) {
      await page.locator('#audit tbody tr', { hasText: action }).first().waitFor();
    }
    const revokedBy = await page.locator('#audit tbody tr', { hasText: 'device_revoked' }).first()
      .locator('td').nth(2).getAttribute('title');
    check(revokedBy === 'operator:alice', `the revocation is alice's: ${revokedBy}`);
    await page.click('#audit-verify');
    await page.locator('#audit-verdict', { hasText: 'Intact' }).waitFor();
    await page.locator('#audit-panel').scrollIntoViewIfNeeded();
    await shot(page, 'audit');

    console.log(`live updates: ${await page.textContent('#live')}`);

    // ---- log out
    step('log out');
    await page.click('#logout');
    await page.locator('#login-view').waitFor({ state: 'visible' });
    const gone = await pageFetch(page, 'GET', '/api/v1/devices');
    check(gone.status === 401, `after logout the API refuses: ${gone.status}`);
    await shot(page, 'logged-out');

    check(problems.length === 0, `the page had errors:\n${problems.join('\n')}`);
    console.log('console test: every step held');
  } catch (e) {
    console.error(`console test FAILED: ${e.stack || e}`);
    if (problems.length) console.error(problems.join('\n'));
    try { await shot(page, 'failure'); } catch { /* the browser is gone */ }
    process.exitCode = 1;
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await context.close();
  }
}

main().then(() => process.exit(process.exitCode || 0), (e) => {
  console.error(e);
  process.exit(1);
});
