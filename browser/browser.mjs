// What the browser scripts share: a headless Debian Chromium driven by playwright-core, the
// dashboard's login form, axe-core checks, and a watchdog so no script can hang.

import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);

/** The browser: FLOTILLA_CHROMIUM, else Debian's chromium package. */
export const CHROMIUM = process.env.FLOTILLA_CHROMIUM || '/usr/bin/chromium';

/** axe-core's browser bundle, injected into each page that is checked. */
export const AXE = require.resolve('axe-core/axe.min.js');

/** Reads a required environment variable, or exits saying which one is missing. */
export function env(name) {
  const value = process.env[name];
  if (!value) fail(`${name} is not set`);
  return value;
}

/** Prints why and exits with status 1. */
export function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exit(1);
}

/** Ends the process after `seconds`, whatever it is waiting for. */
export function watchdog(seconds) {
  const timer = setTimeout(() => fail(`the script ran for more than ${seconds} s`), seconds * 1000);
  timer.unref();
}

/** Launches headless Chromium; fails (never skips) when it is not installed. */
export async function launch() {
  if (!existsSync(CHROMIUM)) {
    fail(
      `no Chromium at ${CHROMIUM}: install it with \`apt-get install -y chromium chromium-driver\` ` +
        '(Debian/Ubuntu; .ci/run does it) or point FLOTILLA_CHROMIUM at a Chromium binary',
    );
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
    timeout: 30_000,
  });
}

/** A page with bounded default waits, logging the page's own errors. */
export async function newPage(browser, viewport = { width: 1440, height: 900 }) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  page.setDefaultNavigationTimeout(30_000);
  page.on('pageerror', (error) => console.error(`page error: ${error.message}`));
  page.violations = [];
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    console.error(`console error: ${message.text()}`);
    // The dashboard must run under its own Content-Security-Policy.
    if (message.text().includes('Content Security Policy')) page.violations.push(message.text());
  });
  // The rollback form may ask for confirmation; a person would say yes.
  page.on('dialog', (dialog) => dialog.accept());
  return page;
}

/** Logs in through the form of `/login`; ends on `/`. */
export async function login(page, base, token) {
  await page.goto(`${base}/login`);
  const field = page.locator('form#login input#token[name=token]');
  await field.fill(token);
  // Enter submits the form, as a person would.
  await Promise.all([
    page.waitForURL((url) => url.pathname === '/', { timeout: 30_000 }),
    field.press('Enter'),
  ]);
}

const axeSource = readFileSync(AXE, 'utf8');

/** Runs axe-core on the page; returns the violations of impact serious or critical. */
export async function accessibility(page, label) {
  // The dashboard's Content-Security-Policy forbids inline scripts, which is what
  // `page.addScriptTag` inserts; evaluated through the DevTools protocol, axe is not a page
  // script, and the policy stays enforced for everything else.
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => window.axe.run());
  const blocking = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  for (const v of result.violations) {
    const where = v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join('; ');
    console.log(`  axe ${label}: ${v.impact} ${v.id} (${v.nodes.length}×): ${v.help} — ${where}`);
  }
  console.log(
    `axe ${label}: ${result.violations.length} violations, ${blocking.length} serious or critical, ` +
      `${result.passes.length} rules passed`,
  );
  return blocking.map((v) => `${label}: ${v.impact} ${v.id}: ${v.help}`);
}

/** Navigation timing of the current document, in milliseconds. */
export async function timing(page) {
  return page.evaluate(() => {
    const [n] = performance.getEntriesByType('navigation');
    return {
      // From sending the request to the first byte: the server's time to render the page.
      server: n.responseStart - n.requestStart,
      // Until the last byte of the HTML.
      response: n.responseEnd - n.requestStart,
      // Until the load event ended: HTML, CSS, script, layout.
      load: n.loadEventEnd - n.startTime,
      bytes: n.transferSize || n.encodedBodySize,
    };
  });
}
