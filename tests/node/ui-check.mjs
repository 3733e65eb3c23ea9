// The web view in a real browser: Debian's Chromium driven by
// playwright-core, against a real `tollgate serve` with a real decision log
// (started by tests/e2e/web_view.rs, which passes what it made in the
// environment). Prints `ok <step>` per step; exits 1 naming the first step
// that fails. Screenshots go to $SCREENSHOTS.
import { chromium } from 'playwright-core';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const base = env('TOLLGATE_URL');
const readToken = env('READ_TOKEN');
const approveToken = env('APPROVE_TOKEN');
const evalToken = env('EVAL_TOKEN');
const decisionId = env('DECISION_ID');
const service = env('SERVICE');
const version = env('VERSION');
const liveBody = env('LIVE_BODY');
const shots = env('SCREENSHOTS');

function check(condition, step, detail) {
  if (!condition) {
    console.log(`FAILED ${step}: ${detail ?? ''}`);
    process.exit(1);
  }
  console.log(`ok ${step}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  headless: true,
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  const urls = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('request', (r) => urls.push(r.url()));

  const first = await page.goto(`${base}/ui/`);
  const csp = first.headers()['content-security-policy'] || '';
  check(csp.includes("script-src 'self'") && !csp.includes('unsafe-inline'), 'the page is served with a strict CSP', csp);
  await page.waitForSelector('#sign-in:not([hidden])');

  // A bad token is refused and kept nowhere.
  await page.fill('#token', 'not-a-known-token-0000000');
  await page.click('#sign-in-form button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#sign-in-error').textContent.length > 0);
  const refused = await page.textContent('#sign-in-error');
  check(refused.includes('does not know'), 'a bad token is refused', refused);
  check(await page.evaluate(() => sessionStorage.getItem('tollgate-token')) === null, 'a refused token is not kept');

  // A read token signs in and sees the releases.
  await page.fill('#token', readToken);
  await page.click('#sign-in-form button[type=submit]');
  await page.waitForSelector('#releases');
  const releases = await page.textContent('#releases');
  check(releases.includes(service) && releases.includes(version), 'the releases list the release', releases);
  await page.screenshot({ path: `${shots}/releases.png` });

  // The release's timeline: every evaluation, the current state and what it waits for.
  await page.click(`a.release[href="#/release/${encodeURIComponent(service)}/${encodeURIComponent(version)}"]`);
  await page.waitForSelector('#timeline');
  const evaluations = await page.locator('#timeline tbody tr').count();
  check(evaluations >= 3, 'the timeline shows each evaluation of each stage', evaluations);
  const waits = await page.textContent('#waits');
  check(waits.length > 0, 'the release says what it waits for', waits);
  await page.screenshot({ path: `${shots}/release.png`, fullPage: true });

  // A read token cannot approve.
  await page.click('#approvals details summary');
  await page.click('#approve-form button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#approve-result').textContent.length > 0);
  const notApproved = await page.textContent('#approve-result');
  check(notApproved.startsWith('Not recorded'), 'a read token cannot approve', notApproved);

  // A decision: score, gates against thresholds, charts, explanation.
  await page.goto(`${base}/ui/#/decision/${decisionId}`);
  await page.waitForSelector('#charts svg.chart');
  const charts = await page.locator('#charts svg.chart').count();
  check(charts >= 2, 'the decision draws a chart per gate', charts);
  const lines = await page.locator('#charts svg line.threshold').count();
  check(lines >= 2, 'each chart marks the threshold', lines);
  const gates = await page.textContent('#gates');
  check(gates.includes('error-rate') && gates.includes('0.0005'), 'each gate shows observed against threshold', gates);
  const alternatives = await page.textContent('#alternatives');
  check(alternatives.includes('promote') && alternatives.includes('error-rate'), 'the decision says what would have changed it', alternatives);
  check((await page.textContent('#policy-text')).includes('kind: Policy'), 'the decision shows its policy text');
  await page.screenshot({ path: `${shots}/decision.png`, fullPage: true });

  // Replay.
  await page.click('#replay');
  await page.waitForFunction(() => /identical|differs|\d{3}:/.test(document.querySelector('#replay-result').textContent));
  const replay = await page.textContent('#replay-result');
  check(replay.startsWith('identical'), 'replay shows identical', replay);

  // Live: a decision made elsewhere appears without a reload.
  await page.goto(`${base}/ui/#/`);
  await page.waitForSelector('#releases');
  await page.waitForSelector('#live.on');
  await page.evaluate(() => { window.notReloaded = true; });
  const made = await fetch(`${base}/v1/evaluate`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${evalToken}`, 'Content-Type': 'application/json' },
    body: liveBody,
  });
  check(made.status === 200, 'another caller makes a decision', made.status);
  const liveVersion = JSON.parse(liveBody).snapshot.version;
  await page.waitForFunction((v) => document.querySelector('#releases').textContent.includes(v), liveVersion, { timeout: 15000 });
  check(await page.evaluate(() => window.notReloaded === true), 'the new decision appears without a reload');

  // A policy, readable; DORA per week.
  await page.goto(`${base}/ui/#/policy/canary`);
  await page.waitForSelector('.stage');
  check(await page.locator('.stage').count() === 3, 'the policy shows its stages');
  check((await page.textContent('main')).includes('threshold: 0.001'), 'the policy shows its thresholds');
  await page.screenshot({ path: `${shots}/policy.png`, fullPage: true });
  await page.goto(`${base}/ui/#/dora/${encodeURIComponent(service)}`);
  await page.waitForSelector('#dora table');
  check(await page.locator('#dora tbody tr').count() === 8, 'DORA shows eight weeks');
  await page.screenshot({ path: `${shots}/dora.png`, fullPage: true });

  // An approve token approves from the page, as POST /v1/approvals would.
  await page.click('#sign-out');
  await page.fill('#token', approveToken);
  await page.click('#sign-in-form button[type=submit]');
  await page.waitForSelector('#nav:not([hidden])');
  await page.goto(`${base}/ui/#/release/${encodeURIComponent(service)}/${encodeURIComponent(version)}`);
  await page.waitForSelector('#approve-form', { state: 'attached' });
  await page.click('#approvals details summary');
  await page.fill('#approve-comment', 'go for it');
  await page.click('#approve-form button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#approve-result').textContent.length > 0);
  const approved = await page.textContent('#approve-result');
  check(approved.startsWith('Recorded approval by alice'), 'an approve token approves from the page', approved);
  await page.waitForSelector('#approval-list');
  check((await page.textContent('#approval-list')).includes('go for it'), 'the approval is listed');

  // Chromium reports every non-2xx answer as a console error; the two the
  // steps above asked for (the bad token's 401, the read token's 403 on
  // approve) are expected, anything else is a fault.
  const expected = [401, 403].map((s) => `Failed to load resource: the server responded with a status of ${s}`);
  const unexpected = errors.filter((e) => !expected.some((x) => e.startsWith(x)));
  check(unexpected.length === 0 && errors.length === 2, 'no console errors', errors.join(' | '));
  const leaked = urls.filter((u) => [readToken, approveToken, evalToken].some((t) => u.includes(t)));
  check(leaked.length === 0, 'no token in any URL', leaked.join(' '));

  // The CSP holds: an injected inline script is refused and never runs.
  const violated = await page.evaluate(() => new Promise((resolve) => {
    document.addEventListener('securitypolicyviolation', (e) => resolve(e.violatedDirective));
    const script = document.createElement('script');
    script.textContent = 'window.pwned = true';
    document.body.append(script);
    setTimeout(() => resolve(null), 2000);
  }));
  check(violated && violated.startsWith('script-src'), 'the CSP refuses an inline script', violated);
  check(await page.evaluate(() => window.pwned === undefined), 'the inline script did not run');
} catch (e) {
  // Say what the page showed, and what the browser complained of.
  const pages = browser.contexts().flatMap((c) => c.pages());
  const shown = pages.length ? await pages[0].textContent('main').catch(() => '') : '';
  console.log(`FAILED: ${e.message.split('\n')[0]}\npage: ${shown}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
