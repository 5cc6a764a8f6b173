#!/usr/bin/env node
// Drives the safeguarding desk tab in headless Chromium (Debian's /usr/bin/chromium, through playwright-core) the
// way a person would, and prints what it saw as one JSON object on the last line of stdout; tests/test_tab.py
// makes the assertions.
//
// The page is loaded on its own, not inside Teams: the Microsoft 365 Agents Playground processes no app manifest
// (so no static tabs) and does not support SSO. Teams JS is only used when the page is framed
// (window.parent !== window); here the SSO token the test identity provider issued is sent as the Authorization
// header of every request (extraHTTPHeaders), which is what the page's own fetches carry inside Teams.
//
//   node check.mjs scenario.json
//   scenario: { url, dslToken, staffToken, reference, otherReference, child: {name} | null, screenshots, timeout }
//
// The browser only talks to loopback; axe-core (this package's node_modules) is injected from the page's own
// origin so the tab's Content-Security-Policy stays on while it is checked.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const AXE = path.join(HERE, 'node_modules', 'axe-core', 'axe.min.js');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const LOOPBACK = (host) => host === 'localhost' || /^127\.\d+\.\d+\.\d+$/.test(host);
const AXE_PATH = '/tab/static/__axe-under-test.js';

const scenario = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const timeout = scenario.timeout || 20000;
const seen = { errors: [], serverErrors: [], blocked: [], csp: [] };

// A stand-in for the Teams web client: it frames the tab and answers Teams JS's postMessage calls (initialize, and
// getAuthToken with the test identity provider's token) the way Teams does. Served at Teams' own origin by routing,
// so the tab's frame-ancestors and Teams JS's origin check both apply for real.
const TEAMS_HOST = 'https://teams.microsoft.com/_esafety-test-host';
const OTHER_HOST = 'https://not-teams.example/_esafety-test-host';

function hostPage(token) {
  return `<!doctype html><html lang="en"><head><title>Teams (test host)</title></head><body>
<iframe id="tab" title="Safeguarding desk" src="${scenario.url}/tab" style="width:1200px;height:850px;border:0"></iframe>
<script>
  const TOKEN = ${JSON.stringify(token)};
  window.asked = [];
  window.addEventListener('message', (event) => {
    const frame = document.getElementById('tab').contentWindow;
    const m = event.data || {};
    if (event.source !== frame || typeof m.func !== 'string') return;
    window.asked.push(m.func);
    const reply = (args) => frame.postMessage({ id: m.id, uuid: m.uuid, args }, event.origin);
    if (m.func === 'initialize') reply(['content', 'web', '2.0.0']);
    else if (m.func === 'authentication.getAuthToken') reply([true, TOKEN]);
  });
</script></body></html>`;
}

async function newContext(browser, token) {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 900 },
    acceptDownloads: true,
    extraHTTPHeaders: token ? { Authorization: `Bearer ${token}` } : {},
  });
  context.setDefaultTimeout(timeout);
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.pathname === AXE_PATH) {
      return route.fulfill({ status: 200, contentType: 'application/javascript', body: fs.readFileSync(AXE) });
    }
    if (url.href === TEAMS_HOST || url.href === OTHER_HOST) {
      return route.fulfill({ status: 200, contentType: 'text/html', body: hostPage(scenario.dslToken) });
    }
    if (LOOPBACK(url.hostname)) return route.continue();
    seen.blocked.push(url.href);
    return route.abort('blockedbyclient');
  });
  return context;
}

async function newPage(context, label) {
  const page = await context.newPage();
  page.on('pageerror', (error) => seen.errors.push(`${label}: ${error.message}`));
  page.on('console', (msg) => {
    if (process.env.TAB_DEBUG) process.stderr.write(`[${label}] console ${msg.type()}: ${msg.text()}\n`);
    if (msg.type() === 'error' && /Content.Security.Policy/i.test(msg.text())) seen.csp.push(`${label}: ${msg.text()}`);
  });
  page.on('response', (response) => {
    if (response.status() >= 500) seen.serverErrors.push(`${label}: ${response.status()} ${response.url()}`);
  });
  return page;
}

async function axe(page, label) {
  await page.addScriptTag({ url: AXE_PATH });
  const result = await page.evaluate(async () => window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22a', 'wcag22aa'] },
    resultTypes: ['violations'],
  }));
  return result.violations.map((v) => ({
    where: label, id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')),
  }));
}

const shot = (page, name) => page.screenshot({ path: path.join(scenario.screenshots, `${name}.png`), fullPage: true });
const text = (page) => page.locator('body').innerText();
const rowsOf = async (page) => (await page.locator('#cases tbody th a').allInnerTexts()).map((t) => t.trim());

async function waitForRows(page) {
  await page.locator('#status').filter({ hasText: /shown/ }).waitFor();
}

async function dsl(browser, out) {
  const context = await newContext(browser, scenario.dslToken);
  const page = await newPage(context, 'dsl');
  await page.goto(`${scenario.url}/tab`);
  await waitForRows(page);
  out.caseload = { rows: await rowsOf(page), count: await page.locator('#count').innerText() };
  out.violations.push(...await axe(page, 'caseload'));
  await shot(page, 'caseload');

  // Filter: only cases nobody has taken on.
  await page.getByLabel('Show').selectOption({ label: 'Unowned' });
  await page.getByRole('button', { name: 'Show cases' }).click();
  await page.locator('#count').filter({ hasText: 'Unowned' }).waitFor();
  await waitForRows(page);
  out.unowned = { rows: await rowsOf(page), count: await page.locator('#count').innerText() };
  await page.getByLabel('Show').selectOption({ label: 'All open' });
  await page.getByRole('button', { name: 'Show cases' }).click();
  await page.locator('#count').filter({ hasText: 'All open' }).waitFor();

  // Open the case: its details and chronology.
  await page.getByRole('link', { name: scenario.reference, exact: true }).click();
  await page.locator('#case-title').filter({ hasText: scenario.reference }).waitFor();
  out.case = {
    title: await page.locator('#case-title').innerText(),
    chronology: await page.locator('#case-chronology li').allInnerTexts(),
    details: await page.locator('#case-details').innerText(),
    documentTitle: await page.title(),
  };
  out.violations.push(...await axe(page, 'case'));
  await shot(page, 'case');

  // Export as PDF: a real download.
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.locator('#case').getByRole('button', { name: 'Export PDF' }).click(),
  ]);
  const file = await download.path();
  const head = fs.readFileSync(file).subarray(0, 5).toString('latin1');
  out.download = { name: download.suggestedFilename(), head, bytes: fs.statSync(file).size };
  await page.locator('#status').filter({ hasText: 'Export ready' }).waitFor();

  // Search by child and open their file: one chronology of every linked case.
  if (scenario.child) {
    await page.getByRole('link', { name: 'Find a child' }).click();
    await page.getByLabel("Child's name").fill(scenario.child.name.split(' ')[0]);
    await page.getByRole('button', { name: 'Search' }).click();
    const link = page.locator('#children').getByRole('link', { name: scenario.child.name });
    await link.waitFor();
    out.search = await page.locator('#children').innerText();
    await link.click();
    await page.locator('#child-title').filter({ hasText: scenario.child.name }).waitFor();
    out.child = {
      title: await page.locator('#child-title').innerText(),
      cases: await page.locator('#child-cases li').allInnerTexts(),
      chronology: await page.locator('#child-chronology li').allInnerTexts(),
    };
    out.violations.push(...await axe(page, 'child'));
    await shot(page, 'child-chronology');
  }
  await context.close();
}

async function keyboard(browser, out) {
  const context = await newContext(browser, scenario.dslToken);
  const page = await newPage(context, 'keyboard');
  await page.goto(`${scenario.url}/tab`);
  await waitForRows(page);
  const visited = [];
  let reached = false;
  for (let presses = 0; presses < 60 && !reached; presses++) {
    await page.keyboard.press('Tab');
    const focused = await page.evaluate(() => {
      const el = document.activeElement;
      const style = el ? getComputedStyle(el) : null;
      return {
        tag: el?.tagName, text: (el?.innerText || el?.getAttribute('aria-label') || el?.id || '').trim().slice(0, 40),
        outline: style ? `${style.outlineStyle} ${style.outlineWidth}` : '',
      };
    });
    visited.push(focused);
    reached = focused.tag === 'A' && focused.text === scenario.reference;
  }
  out.keyboard = { visited, reached };
  if (reached) {
    await shot(page, 'keyboard-focus');
    await page.keyboard.press('Enter');
    await page.locator('#case-title').filter({ hasText: scenario.reference }).waitFor();
    out.keyboard.opened = await page.evaluate(() => document.activeElement?.id);
    out.keyboard.chronology = await page.locator('#case-chronology li').count();
  }
  await context.close();
}

async function refused(browser, out, token, label) {
  const context = await newContext(browser, token);
  const page = await newPage(context, label);
  const api = [];
  page.on('response', (r) => { if (new URL(r.url()).pathname.startsWith('/tab/api/')) api.push(r.status()); });
  await page.goto(`${scenario.url}/tab`);
  await page.locator('#message-title').filter({ hasText: /\S/ }).waitFor();
  out[label] = { heading: await page.locator('#message-title').innerText(), text: await text(page), api };
  out.violations.push(...await axe(page, label));
  await shot(page, label === 'staff' ? 'refused' : 'sign-in');
  await context.close();
}

async function inTeams(browser, out) {
  const context = await newContext(browser, null); // no header: the token must come through Teams JS
  const page = await newPage(context, 'teams');
  await page.goto(TEAMS_HOST);
  const tab = page.frameLocator('#tab');
  try {
    await tab.getByRole('link', { name: scenario.reference, exact: true }).waitFor();
  } catch (error) {
    await shot(page, 'failure-in-teams');
    throw new Error(`${error.message}\nthe host was asked: ${JSON.stringify(await page.evaluate(() => window.asked))}`
      + `\nthe tab shows: ${await tab.locator('body').innerText({ timeout: 1000 }).catch(() => '(nothing)')}`);
  }
  out.teams = { rows: (await tab.locator('#cases tbody th a').allInnerTexts()).map((t) => t.trim()),
    asked: await page.evaluate(() => window.asked) };
  await shot(page, 'in-teams');
  await context.close();

  // Anyone else may not frame the tab at all (frame-ancestors): the frame stays empty.
  const other = await newContext(browser, null);
  const elsewhere = await newPage(other, 'not-teams');
  const blocked = elsewhere.waitForEvent('console', (msg) => /frame-ancestors/.test(msg.text()));
  await elsewhere.goto(OTHER_HOST);
  await blocked;
  out.framedElsewhere = await elsewhere.frameLocator('#tab').locator('body').innerText({ timeout: 2000 })
    .catch(() => '');
  await other.close();
}

const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1'];
const launch = (extra = []) => chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...ARGS, ...extra] });

const out = { violations: [] };
let failure = null;
let browser = null;
try {
  fs.mkdirSync(scenario.screenshots, { recursive: true });
  browser = await launch();
  await dsl(browser, out);
  await keyboard(browser, out);
  await refused(browser, out, scenario.staffToken, 'staff');
  await refused(browser, out, null, 'anonymous');
  await browser.close();
  // Only here: the stand-in Teams page is "public" and the app under test is on loopback, which Chromium's local
  // network access checks would block (real Teams frames the app's public https address).
  browser = await launch(['--disable-features=LocalNetworkAccessChecks,PrivateNetworkAccessForNavigations,'
    + 'PrivateNetworkAccessRespectPreflightResults,BlockInsecurePrivateNetworkRequests']);
  await inTeams(browser, out);
} catch (error) {
  failure = String(error && error.stack ? error.stack : error);
} finally {
  if (browser) await browser.close();
}
console.log(JSON.stringify({ ...out, ...seen, failure }));
