#!/usr/bin/env node
// Renders Adaptive Cards with Microsoft's `adaptivecards` JavaScript renderer in Debian's headless Chromium.
//
//   node render.mjs CARDS.json OUT_DIR
//
// CARDS.json is {"name": card, ...}. For each card: parse it as an Adaptive Card 1.5 (the renderer's own
// SerializationContext), collect every parse/validation event, render it into the page, and save OUT_DIR/<name>.png.
// Prints one JSON object on stdout: {"name": {"events": [...], "rendered": bool, "height": px, "actions": n}}.
// Exit code 0 when everything ran (problems are reported in the JSON for the caller to judge), 2 on a crash.
// The browser only talks to nothing: the page is about:blank and every network request is aborted.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const RENDERER = path.join(HERE, 'node_modules', 'adaptivecards', 'dist', 'adaptivecards.min.js');

// A Teams-like host: interactive, 1.5, Segoe-like fonts, light theme.
const HOST_CONFIG = {
  supportsInteractivity: true,
  fontFamily: "'Segoe UI', system-ui, sans-serif",
  spacing: { small: 4, default: 8, medium: 16, large: 20, extraLarge: 24, padding: 16 },
  separator: { lineThickness: 1, lineColor: '#E1E1E1' },
  actions: { maxActions: 6, spacing: 'default', buttonSpacing: 8, actionsOrientation: 'horizontal',
    actionAlignment: 'left', showCard: { actionMode: 'inline', inlineTopMargin: 16 } },
  containerStyles: {
    default: { backgroundColor: '#FFFFFF', foregroundColors: {
      default: { default: '#242424', subtle: '#616161' }, accent: { default: '#5B5FC7', subtle: '#444791' },
      attention: { default: '#C4314B', subtle: '#A72037' }, good: { default: '#237B4B', subtle: '#0E5C31' },
      warning: { default: '#835C00', subtle: '#6D4C00' } } },
    emphasis: { backgroundColor: '#F5F5F5', foregroundColors: { default: { default: '#242424', subtle: '#616161' } } },
  },
};

async function main() {
  const [cardsPath, outDir] = process.argv.slice(2);
  if (!cardsPath || !outDir) throw new Error('usage: node render.mjs CARDS.json OUT_DIR');
  if (!fs.existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_PATH)`);
  if (!fs.existsSync(RENDERER)) throw new Error(`adaptivecards is not installed: run npm ci in ${HERE}`);
  const cards = JSON.parse(fs.readFileSync(cardsPath, 'utf8'));
  fs.mkdirSync(outDir, { recursive: true });
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cards-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 520, height: 400 },
    deviceScaleFactor: 1,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage',
      '--host-resolver-rules=MAP * ~NOTFOUND'],
  });
  const results = {};
  try {
    await context.route('**/*', (route) => route.abort('blockedbyclient'));
    const page = context.pages()[0] || (await context.newPage());
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.setContent('<!doctype html><html><head><meta charset="utf-8"><style>'
      + 'body{margin:0;padding:16px;background:#F0F0F0;font-family:system-ui,sans-serif}'
      + '#card{width:460px;background:#fff;border-radius:6px;box-shadow:0 1px 3px rgba(0,0,0,.2)}'
      + '.ac-pushButton{border:1px solid #D1D1D1;border-radius:4px;background:#fff;padding:5px 12px;'
      + 'font:600 14px system-ui,sans-serif;cursor:pointer}'
      + '.ac-pushButton.style-positive{background:#5B5FC7;color:#fff;border-color:#5B5FC7}'
      + '.ac-pushButton.style-destructive{color:#C4314B}'
      + 'input,select,textarea{font:14px system-ui,sans-serif}'
      + '</style></head><body><div id="card"></div></body></html>');
    await page.addScriptTag({ path: RENDERER });
    // Teams renders a Markdown subset in TextBlocks; the renderer leaves that to the host. A small converter:
    // escape HTML, then **bold**, _italic_, [text](https://...) links, "- " bullet lines and line breaks.
    await page.evaluate(() => {
      const escape = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
      const inline = (s) => escape(s).replace(/\*\*(.+?)\*\*/g, '<strong>$1</strong>')
        .replace(/(^|\s)_(.+?)_(?=\s|$)/g, '$1<em>$2</em>')
        .replace(/\[([^\]]+)\]\((https:[^)]+)\)/g, '<a href="$2">$1</a>');
      window.AdaptiveCards.AdaptiveCard.onProcessMarkdown = (text, result) => {
        const out = [];
        let list = false;
        for (const line of String(text).split('\n')) {
          const bullet = /^\s*[-*] (.*)$/.exec(line);
          if (bullet && !list) { out.push('<ul style="margin:0;padding-left:20px">'); list = true; }
          if (!bullet && list) { out.push('</ul>'); list = false; }
          out.push(bullet ? `<li>${inline(bullet[1])}</li>` : `${inline(line)}<br>`);
        }
        if (list) out.push('</ul>');
        result.outputHtml = out.join('').replace(/<br>$/, '');
        result.didProcess = true;
      };
    });
    for (const [name, card] of Object.entries(cards)) {
      const result = await page.evaluate(({ card, hostConfig }) => {
        const AC = window.AdaptiveCards;
        const host = document.getElementById('card');
        host.innerHTML = '';
        const events = [];
        const ac = new AC.AdaptiveCard();
        ac.hostConfig = new AC.HostConfig(hostConfig);
        const context = new AC.SerializationContext(AC.Versions.v1_5);
        try {
          ac.parse(card, context);
        } catch (e) {
          events.push({ phase: 'parse', event: 'exception', message: String(e && e.message || e) });
        }
        for (let i = 0; i < context.eventCount; i++) {
          const ev = context.getEventAt(i);
          events.push({ phase: AC.ValidationPhase[ev.phase], event: AC.ValidationEvent[ev.event], message: ev.message,
            source: ev.source && ev.source.getJsonTypeName ? ev.source.getJsonTypeName() : null });
        }
        const validation = ac.validateProperties();
        for (const ev of validation.validationEvents) {
          events.push({ phase: AC.ValidationPhase[ev.phase], event: AC.ValidationEvent[ev.event], message: ev.message,
            source: ev.source && ev.source.getJsonTypeName ? ev.source.getJsonTypeName() : null });
        }
        let rendered = null;
        try {
          rendered = ac.render();
        } catch (e) {
          events.push({ phase: 'render', event: 'exception', message: String(e && e.message || e) });
        }
        if (rendered) host.appendChild(rendered);
        const buttons = host.querySelectorAll('button').length;
        return { events, rendered: !!rendered, height: rendered ? rendered.offsetHeight : 0, buttons,
          text: host.innerText };
      }, { card, hostConfig: HOST_CONFIG });
      result.pageErrors = pageErrors.splice(0);
      if (result.rendered) {
        await page.locator('#card').screenshot({ path: path.join(outDir, `${name}.png`) });
      }
      results[name] = result;
    }
  } finally {
    await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
  process.stdout.write(JSON.stringify(results));
}

main().catch((e) => {
  process.stderr.write(`render.mjs: ${e && e.stack || e}\n`);
  process.exit(2);
});
