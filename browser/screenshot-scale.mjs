// The dashboard at scale: logs in to a hub seeded by `hub/examples/seed_fleet.rs` (1,000
// clusters × 100 ApplicationSets), loads the overview and its second page, prints how long
// the server and the browser took (navigation timing), and saves a screenshot.
//
//   FLOTILLA_URL    the hub's human API
//   FLOTILLA_TOKEN  the admin token
//   FLOTILLA_OUT    the screenshot to write (default docs/screenshots/overview-1000x100.png)
//   FLOTILLA_LOADS  how many times each page is loaded for the figures (default 3)
//
// It prints figures and never fails on timing (STYLE.md rule 18); it fails when a page does
// not show the matrix.

import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { env, fail, launch, login, newPage, timing, watchdog } from './browser.mjs';

watchdog(300);
const base = env('FLOTILLA_URL').replace(/\/$/, '');
const token = env('FLOTILLA_TOKEN');
const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.env.FLOTILLA_OUT || `${here}/../docs/screenshots/overview-1000x100.png`);
const loads = Number(process.env.FLOTILLA_LOADS || 3);
mkdirSync(dirname(out), { recursive: true });

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const ms = (value) => `${value.toFixed(0).padStart(6)} ms`;

/** Loads `url` `loads` times; prints the median figures; returns the page's row count. */
async function measure(page, label, url) {
  const runs = [];
  for (let i = 0; i < loads; i += 1) {
    await page.goto(url, { waitUntil: 'load', timeout: 120_000 });
    await page.locator('table#matrix').waitFor();
    runs.push(await timing(page));
  }
  const rows = await page.locator('table#matrix tr[data-cluster]').count();
  const columns = await page.locator('table#matrix th[data-column]').count();
  if (rows === 0 || columns === 0) fail(`${label}: the matrix is empty (${rows} rows, ${columns} columns)`);
  const pick = (key) => median(runs.map((r) => r[key]));
  console.log(
    `${label.padEnd(22)} server (request → first byte) ${ms(pick('server'))} · ` +
      `HTML complete ${ms(pick('response'))} · total load ${ms(pick('load'))} · ` +
      `${(pick('bytes') / 1024).toFixed(0)} KiB · ${rows} rows × ${columns} columns ` +
      `(median of ${loads}; first load ${runs[0].load.toFixed(0)} ms)`,
  );
  return { rows, columns };
}

const browser = await launch();
try {
  const page = await newPage(browser, { width: 1600, height: 1000 });
  await login(page, base, token);
  await page.locator('table#matrix').waitFor({ timeout: 120_000 });
  const counts = (await page.locator('#counts').innerText()).replace(/\s+/g, ' ').trim();
  console.log(`#counts: ${counts}`);
  await measure(page, 'overview, first page', `${base}/`);
  await page.screenshot({ path: out });
  console.log(`screenshot: ${out}`);
  const next = page.locator('nav.pager a[rel=next]').first();
  if ((await next.count()) === 0) fail('the overview has no nav.pager a[rel=next]');
  const href = new URL(await next.getAttribute('href'), `${base}/`).toString();
  await measure(page, 'overview, second page', href);
} finally {
  await browser.close();
}
