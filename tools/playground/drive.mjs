#!/usr/bin/env node
// Playwright driver for the Microsoft 365 Agents Playground (a local Teams-like client).
//
// Library:
//   import { openPlayground, send, waitForText, clickButton, fillInput, screenshot, close } from './drive.mjs';
//   await openPlayground({ url: 'http://localhost:56150', screenshotsDir: 'var/screenshots' });
//   await send('help');
//   await waitForText('Echo bot help');
//   await fillInput('note', 'hi');          // Adaptive Card input id, or its label / placeholder
//   await clickButton('Send note');          // Adaptive Card action title
//   await screenshot('after-submit');        // -> var/screenshots/after-submit.png
//   await close();
// The same methods exist on the session object openPlayground() returns, plus selectConversation(),
// messages() and pane text helpers.
//
// CLI (steps run in the order given; exit 0 only if every step passed):
//   node drive.mjs --url http://localhost:56150 --send help --expect "Echo bot help" \
//                  --fill note="my note" --click "Send note" --expect Submitted \
//                  --screenshot var/screenshots/help.png
//   Options: --url URL  --screenshots DIR  --timeout MS  --conversation NAME  --mention NAME
//            --send TEXT  --expect TEXT  --click TITLE  --fill KEY=VALUE  --show TEXT  --screenshot NAME|PATH.png
//            --wait MS
//
// Environment: PLAYGROUND_URL (default http://localhost:$PLAYGROUND_PORT, port default 56150),
//   CHROMIUM_PATH (default /usr/bin/chromium), PLAYGROUND_TIMEOUT (ms, default 20000),
//   PLAYGROUND_SCREENSHOTS (default var/screenshots).
//
// The browser only ever talks to loopback: every request to another host is aborted (the playground's
// page asks a Microsoft CDN for Segoe UI fonts and an animation worklet; it renders fine without them),
// and Chromium's resolver maps every other hostname to NOTFOUND.
//
// Selectors (found by reading the playground 0.2.28 page's DOM/accessibility tree; no CSS-in-JS classes):
//   ready / composer (1:1 and group chat) : button[aria-label="Send Message"] + the Lexical editor
//                                           [data-lexical-editor="true"][role="textbox"] (placeholder text
//                                           "Type a message..." is a sibling span, not an attribute)
//   composer (team channel, new post)     : role=group that has button "Post"; its role=textbox; button "Post"
//   reply in a channel thread             : last role=group with button "Send Message"
//   conversation list                     : role=treeitem named "Personal Chat", "Group Chat",
//                                           "My Team - General", "My Team - Announcements" (from the config)
//   @mention picker                       : role=listbox "Typeahead menu" > role=menuitem containing the name
//   conversation pane (for text matching) : the ancestor of the composer that is a sibling of
//                                           role=region "Chat and Teams Channel" (excludes the log panel)
//   Adaptive Cards                        : .ac-adaptiveCard (class set by the adaptivecards renderer)
//   card buttons                          : role=button with accessible name == action title
//   card inputs (Fluent UI controls)      : Input.Text -> textbox, Input.Number -> spinbutton,
//     Input.Date / Input.Time -> combobox (typeable; Escape closes the picker), Input.Toggle -> checkbox named
//     "<label> <title>", ChoiceSet compact -> combobox + role=option (multi-select: role=menuitemcheckbox),
//     ChoiceSet expanded -> radiogroup of radios (multi-select: checkboxes); all named by the input's label
//     (or its placeholder when it has no label). The card's input ids are not in the DOM, so ids are mapped to
//     labels through the card JSON that the page receives on its WebSocket (and in invoke responses).
//   bot messages (protocol level)         : WebSocket /_ws_conversation/v1/conversations/stream frames with
//                                           action "createMessage"
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const DEFAULT_PORT = process.env.PLAYGROUND_PORT || '56150';
const DEFAULT_URL = process.env.PLAYGROUND_URL || `http://localhost:${DEFAULT_PORT}`;
const DEFAULT_TIMEOUT = Number(process.env.PLAYGROUND_TIMEOUT || 20000);
const DEFAULT_SHOTS = process.env.PLAYGROUND_SCREENSHOTS || 'var/screenshots';
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const LOOPBACK = (host) => host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
const EDITOR = '[data-lexical-editor="true"]';

const norm = (s) => String(s ?? '').replace(/\s+/g, ' ').trim();
const countOf = (hay, needle) => {
  if (!needle) return 0;
  let n = 0;
  for (let i = hay.indexOf(needle); i !== -1; i = hay.indexOf(needle, i + needle.length)) n++;
  return n;
};
const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Walk an Adaptive Card (body, containers, columns, ShowCard cards) and collect its inputs.
function collectInputs(card, out = []) {
  if (!card || typeof card !== 'object') return out;
  if (Array.isArray(card)) { card.forEach((c) => collectInputs(c, out)); return out; }
  if (typeof card.type === 'string' && card.type.startsWith('Input.') && card.id) out.push(card);
  for (const key of ['body', 'items', 'columns', 'actions', 'card', 'inlineAction', 'rows', 'cells']) {
    if (card[key]) collectInputs(card[key], out);
  }
  return out;
}

export class PlaygroundSession {
  constructor({ url = DEFAULT_URL, screenshotsDir = DEFAULT_SHOTS, timeout = DEFAULT_TIMEOUT, allowNoBot = false, log = () => {} } = {}) {
    this.allowNoBot = allowNoBot; // openPlayground() fails when the playground reports the bot unreachable
    this.url = url.replace(/\/+$/, '');
    this.screenshotsDir = screenshotsDir;
    this.timeout = timeout;
    this.log = log;
    this.cards = [];        // Adaptive Card JSON seen (oldest first)
    this.botMessages = [];  // createMessage payloads from the WebSocket
    this.blocked = [];      // non-loopback URLs the page tried to load
    this.baseline = '';     // pane text at the last user action (for waitForText)
  }

  async open() {
    if (!fs.existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_PATH)`);
    this.userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'playground-chromium-'));
    this.context = await chromium.launchPersistentContext(this.userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1400, height: 1000 },
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        '--disable-dev-shm-usage', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost',
      ],
    });
    this.context.setDefaultTimeout(this.timeout);
    await this.context.route('**/*', (route) => {
      const u = new URL(route.request().url());
      if (LOOPBACK(u.hostname)) return route.continue();
      this.blocked.push(u.href);
      return route.abort('blockedbyclient');
    });
    this.page = this.context.pages()[0] || (await this.context.newPage());
    const page = this.page;
    page.on('pageerror', (e) => this.log(`page error: ${e.message}`));
    page.on('websocket', (ws) => {
      ws.on('framereceived', ({ payload }) => {
        try {
          const msg = JSON.parse(String(payload));
          if (msg.action === 'createMessage' || msg.action === 'updateMessage') {
            this.botMessages.push({ conversationId: msg.actionConversationId, ...msg.message });
            for (const a of msg.message?.attachments || []) {
              if (a.contentType === 'application/vnd.microsoft.card.adaptive') this.cards.push(a.content);
            }
          }
        } catch { /* log stream frames etc. */ }
      });
    });
    // Invoke responses (Action.Execute) come back over HTTP, not the WebSocket.
    page.on('response', async (res) => {
      if (!/\/_conversation\/v1\/invoke$/.test(new URL(res.url()).pathname)) return;
      try {
        const body = await res.json();
        const v = body?.value ?? body;
        if (v?.type === 'application/vnd.microsoft.card.adaptive' && v.value) this.cards.push(v.value);
      } catch { /* non-JSON */ }
    });

    // Loading the page makes the playground send installationUpdate + conversationUpdate to the bot
    // (POST /_debug/conversation/<id>/installation) after GET /_internal/v1/config, which itself waits up to
    // 15 s for the bot endpoint to answer.
    const installed = page.waitForResponse((r) => /\/_debug\/conversation\/[^/]+\/installation$/.test(new URL(r.url()).pathname),
      { timeout: this.timeout + 15000 }).catch(() => null);
    await page.goto(this.url, { waitUntil: 'domcontentloaded', timeout: this.timeout + 15000 });
    await this._composerReady(this.timeout + 15000);
    await installed;
    await this._settle();
    if (await page.getByText('Cannot connect to your app').count()) {
      const msg = 'the playground cannot reach the bot (is it running at the playground\'s BOT_URL?)';
      if (!this.allowNoBot) throw new Error(msg);
      this.log(`warning: ${msg}`);
    }
    this.baseline = await this.paneText();
    return this;
  }

  async _composerReady(timeout = this.timeout) {
    await this.page.locator(EDITOR).first().waitFor({ state: 'visible', timeout });
  }

  // Wait until no new bot message has arrived for `quiet` ms (bounded by `max`).
  async _settle(quiet = 400, max = 5000) {
    const end = Date.now() + max;
    let n = this.botMessages.length;
    let since = Date.now();
    while (Date.now() < end) {
      await sleep(100);
      if (this.botMessages.length !== n) { n = this.botMessages.length; since = Date.now(); }
      else if (Date.now() - since >= quiet) return;
    }
  }

  // Text of the conversation pane only (not the chat list, not the log panel), whitespace-normalised.
  async paneText() {
    return norm(await this.page.evaluate((editorSel) => {
      const nav = document.querySelector('[role="region"][aria-label="Chat and Teams Channel"]');
      let el = document.querySelector(editorSel);
      if (!el) return '';
      while (el.parentElement && nav && !el.parentElement.contains(nav)) el = el.parentElement;
      return el.innerText;
    }, EDITOR));
  }

  _pane() {
    // A locator for the same pane: the element that contains the composer and not the chat list / log panel.
    return this.page.locator('div').filter({ has: this.page.locator(EDITOR) })
      .filter({ hasNot: this.page.getByRole('region', { name: 'Chat and Teams Channel' }) })
      .filter({ hasNotText: 'Log Panel' }).first();
  }

  async selectConversation(name) {
    await this.page.getByRole('treeitem', { name, exact: true }).click();
    await this._composerReady();
    await this._settle();
    this.baseline = await this.paneText();
  }

  // Type `text` into the composer and send it. In a team channel this starts a new post unless
  // { reply: true } (then it replies in the last thread). { mention: 'Test Bot' } inserts an @mention first
  // (channels and group chats only forward messages that @mention the bot).
  async send(text, { mention, reply = false } = {}) {
    const page = this.page;
    this.baseline = await this.paneText();
    const postButton = page.getByRole('button', { name: 'Post', exact: true });
    let box, submit;
    if (!reply && (await postButton.count())) {
      const group = page.getByRole('group').filter({ has: postButton });
      box = group.locator(EDITOR);
      submit = group.getByRole('button', { name: 'Post', exact: true });
    } else {
      const group = page.getByRole('group').filter({ has: page.getByRole('button', { name: 'Send Message' }) });
      const inThread = reply && (await group.count());
      box = inThread ? group.last().locator(EDITOR) : page.locator(EDITOR).last();
      submit = inThread ? group.last().getByRole('button', { name: 'Send Message' }) : page.getByRole('button', { name: 'Send Message' }).last();
    }
    await box.click();
    if (mention) {
      await page.keyboard.type(`@${mention.split(' ')[0]}`);
      await page.getByRole('listbox', { name: 'Typeahead menu' }).getByRole('menuitem').filter({ hasText: mention }).first().click();
      await page.keyboard.type(' ');
    }
    // insertText keeps "\n" as a line break in the activity text (Shift+Enter would be dropped by the playground).
    await page.keyboard.insertText(String(text));
    const posted = page.waitForResponse((r) => r.request().method() === 'POST' && /\/_conversation\/v1\/conversations\/[^/]+\/messages$/.test(new URL(r.url()).pathname));
    await submit.click();
    const res = await posted;
    if (!res.ok()) throw new Error(`playground answered ${res.status()} to the message: ${(await res.text()).slice(0, 300)}`);
    return res.status();
  }

  // Wait until `text` appears in the conversation pane more often than it did at the last send/click/fill
  // (so an old identical reply does not count). { since: 'start' } accepts any occurrence.
  async waitForText(text, { timeout = this.timeout, since = 'last' } = {}) {
    const want = norm(text);
    const before = since === 'start' ? 0 : countOf(this.baseline, want);
    const end = Date.now() + timeout;
    let current = '';
    while (Date.now() < end) {
      current = await this.paneText();
      if (countOf(current, want) > before) return true;
      await sleep(150);
    }
    throw new Error(`timed out after ${timeout} ms waiting for "${text}"; conversation pane ends with: "${current.slice(-400)}"`);
  }

  // Click an Adaptive Card action (or any button in the conversation pane) by its title; the most recent match
  // wins. Returns { request: 'submit'|'invoke'|null, status } when the click posted something to the playground.
  async clickButton(title, { timeout = this.timeout } = {}) {
    const page = this.page;
    this.baseline = await this.paneText();
    const cards = page.locator('.ac-adaptiveCard');
    let button = cards.getByRole('button', { name: title, exact: true });
    if (!(await button.count())) button = this._pane().getByRole('button', { name: title, exact: true });
    button = button.filter({ visible: true }).last();
    await button.waitFor({ state: 'visible', timeout });
    const posted = page.waitForRequest((r) => r.method() === 'POST' && /\/_conversation\/v1\/(submit|invoke)$/.test(new URL(r.url()).pathname),
      { timeout: 2000 }).catch(() => null);
    await button.click();
    const req = await posted;
    if (!req) return { request: null, status: null };
    const res = await req.response();
    const kind = new URL(req.url()).pathname.endsWith('invoke') ? 'invoke' : 'submit';
    if (res && !res.ok()) this.log(`warning: ${kind} answered ${res.status()}`);
    return { request: kind, status: res ? res.status() : null };
  }

  // Fill an Adaptive Card input by its id (mapped to its label through the card JSON), label, or placeholder.
  // Values: text/number/date (YYYY-MM-DD)/time (HH:MM); Toggle: true/false/yes/no/on/off or its valueOn/valueOff;
  // ChoiceSet: a choice title or value (multi-select: comma-separated).
  async fillInput(labelOrId, value, { timeout = this.timeout } = {}) {
    const page = this.page;
    const roles = ['textbox', 'spinbutton', 'combobox', 'checkbox', 'radiogroup', 'switch', 'group'];
    const cards = page.locator('.ac-adaptiveCard');
    const end = Date.now() + timeout;
    let control = null, role = null, spec, names;
    while (!control && Date.now() < end) {
      // Re-read each round: the card may still be on its way.
      const inputs = [...this.cards].reverse().map((c) => collectInputs(c));
      spec = inputs.map((l) => l.find((i) => i.id === labelOrId)).find(Boolean)
        || inputs.map((l) => l.find((i) => i.label === labelOrId || i.placeholder === labelOrId)).find(Boolean);
      names = [...new Set([spec?.label, spec?.placeholder, spec?.title, labelOrId].filter(Boolean))];
      for (const name of names) {
        for (const r of roles) {
          for (const n of [name, new RegExp(`^${escapeRe(name)}\\b`)]) {
            const loc = cards.getByRole(r, { name: n, exact: typeof n === 'string' ? true : undefined }).filter({ visible: true });
            if (await loc.count()) { control = loc.last(); role = r; break; }
          }
          if (control) break;
        }
        if (control) break;
      }
      if (!control) await sleep(200);
    }
    if (!control) throw new Error(`no Adaptive Card input found for "${labelOrId}" (tried names: ${names.join(', ')})`);
    this.baseline = await this.paneText();
    const v = String(value);
    const choiceTitle = (x) => spec?.choices?.find((c) => c.value === x || c.title === x)?.title ?? x;
    if (role === 'checkbox' || role === 'switch') {
      const on = ['true', 'yes', 'on', '1'].includes(v.toLowerCase()) || (spec?.valueOn !== undefined && v === String(spec.valueOn));
      await control.setChecked(on);
    } else if (role === 'radiogroup' || role === 'group') {
      const want = (spec?.isMultiSelect ? v.split(',').map((x) => x.trim()) : [v]).map(choiceTitle);
      if (spec?.isMultiSelect) {
        const titles = spec.choices?.map((c) => c.title) ?? want;
        for (const t of titles) await control.getByRole('checkbox', { name: t, exact: true }).setChecked(want.includes(t));
      } else {
        await control.getByRole('radio', { name: want[0], exact: true }).check();
      }
    } else if (role === 'combobox' && (!spec || spec.type === 'Input.ChoiceSet')) {
      const want = spec?.isMultiSelect ? v.split(',').map((s) => s.trim()) : [v];
      await control.click();
      for (const w of want) {
        const opt = page.getByRole('option', { name: choiceTitle(w), exact: true })
          .or(page.getByRole('menuitemcheckbox', { name: choiceTitle(w), exact: true }))
          .or(page.getByRole('menuitemradio', { name: choiceTitle(w), exact: true }));
        await opt.first().click();
      }
      if (spec?.isMultiSelect) await page.keyboard.press('Escape');
    } else {
      // textbox, spinbutton, date/time combobox (typeable; Enter commits, Escape closes the picker popup)
      await control.fill(v);
      if (role === 'combobox') { await control.press('Enter'); await page.keyboard.press('Escape'); }
    }
    return { role, label: names[0] };
  }

  // Scroll the conversation so the latest message containing `text` is in view: the Playground keeps the newest
  // message's end in view, so a long card hides what was said above it.
  async show(text, { timeout = this.timeout } = {}) {
    const found = this._pane().getByText(text, { exact: false }).last();
    await found.waitFor({ state: 'attached', timeout });
    await found.scrollIntoViewIfNeeded();
  }

  // Save a PNG. A bare name goes to screenshotsDir/<name>.png; a path ending in .png is used as given.
  async screenshot(name, { fullPage = false } = {}) {
    const file = /\.png$/i.test(name) ? name : path.join(this.screenshotsDir, `${name}.png`);
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    await this.page.screenshot({ path: file, fullPage });
    return file;
  }

  messages() { return [...this.botMessages]; }

  async close() {
    try { await this.context?.close(); } finally {
      if (this.userDataDir) fs.rmSync(this.userDataDir, { recursive: true, force: true });
    }
  }
}

// Module-level API over one current session.
let current = null;
const need = () => { if (!current) throw new Error('call openPlayground() first'); return current; };
export async function openPlayground(opts = {}) {
  const s = new PlaygroundSession(opts);
  try { await s.open(); } catch (e) { await s.close().catch(() => {}); throw e; }
  current = s;
  return s;
}
export const selectConversation = (name) => need().selectConversation(name);
export const send = (text, opts) => need().send(text, opts);
export const waitForText = (text, opts) => need().waitForText(text, opts);
export const clickButton = (title, opts) => need().clickButton(title, opts);
export const fillInput = (labelOrId, value, opts) => need().fillInput(labelOrId, value, opts);
export const screenshot = (name, opts) => need().screenshot(name, opts);
export const messages = () => need().messages();
export async function close() { if (current) { const s = current; current = null; await s.close(); } }

// ---------------------------------------------------------------- CLI
const USAGE = `usage: node drive.mjs [--url URL] [--screenshots DIR] [--timeout MS] STEP...
steps (run in order): --conversation NAME | --mention NAME | --send TEXT | --reply TEXT | --expect TEXT |
                      --click TITLE | --fill KEY=VALUE | --show TEXT | --screenshot NAME|PATH.png | --wait MS
example: node drive.mjs --url http://localhost:56150 --send help --expect "Echo bot help" --screenshot var/screenshots/help.png`;

async function main(argv) {
  const opts = { url: DEFAULT_URL, screenshotsDir: DEFAULT_SHOTS, timeout: DEFAULT_TIMEOUT };
  const steps = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => { if (i + 1 >= argv.length) throw new Error(`${a} needs a value\n${USAGE}`); return argv[++i]; };
    switch (a) {
      case '--url': opts.url = val(); break;
      case '--screenshots': opts.screenshotsDir = val(); break;
      case '--timeout': opts.timeout = Number(val()); break;
      case '-h': case '--help': console.log(USAGE); return 0;
      case '--conversation': case '--mention': case '--send': case '--reply': case '--expect':
      case '--click': case '--fill': case '--screenshot': case '--wait': case '--show':
        steps.push([a.slice(2), val()]); break;
      default: throw new Error(`unknown argument ${a}\n${USAGE}`);
    }
  }
  const say = (m) => console.log(`[drive] ${m}`);
  opts.log = say;
  const s = await openPlayground(opts);
  say(`opened ${opts.url}`);
  let mention;
  try {
    for (const [kind, v] of steps) {
      switch (kind) {
        case 'conversation': await s.selectConversation(v); say(`conversation "${v}"`); break;
        case 'mention': mention = v || undefined; break;
        case 'send': await s.send(v, { mention }); say(`sent "${v}"`); break;
        case 'reply': await s.send(v, { mention, reply: true }); say(`replied "${v}"`); break;
        case 'expect': await s.waitForText(v); say(`saw "${v}"`); break;
        case 'click': { const r = await s.clickButton(v); say(`clicked "${v}"${r.request ? ` -> ${r.request} ${r.status}` : ''}`); break; }
        case 'fill': {
          const eq = v.indexOf('=');
          if (eq < 1) throw new Error(`--fill wants KEY=VALUE, got "${v}"`);
          const r = await s.fillInput(v.slice(0, eq), v.slice(eq + 1));
          say(`filled ${v.slice(0, eq)} (${r.role} "${r.label}")`);
          break;
        }
        case 'show': await s.show(v); say(`showing "${v}"`); break;
        case 'screenshot': say(`screenshot ${await s.screenshot(v)}`); break;
        case 'wait': await sleep(Number(v)); break;
      }
    }
    if (s.blocked.length) say(`blocked ${s.blocked.length} non-loopback request(s) from the page (CDN fonts)`);
    return 0;
  } catch (e) {
    console.error(`[drive] FAILED: ${e.message}`);
    try { console.error(`[drive] failure screenshot: ${await s.screenshot(`failure-${Date.now()}`)}`); } catch { /* page gone */ }
    return 1;
  } finally {
    await close();
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then((code) => process.exit(code), (e) => { console.error(`[drive] ${e.message}`); process.exit(2); });
}
