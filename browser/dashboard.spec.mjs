// The dashboard in a real browser, against a real hub with three clusters and their agents
// (started by e2e/tests/dashboard.rs, which passes what it made in the environment):
//
//   FLOTILLA_URL          the hub's human API, http://127.0.0.1:PORT
//   FLOTILLA_TOKEN        the admin token, typed into the login form
//   FLOTILLA_APP          the matrix column under test (an ApplicationSet over the clusters)
//   FLOTILLA_REVISION_A   the older commit, deployed before the current one
//   FLOTILLA_SCREENSHOTS  where the screenshots go (a directory under target/)
//   FLOTILLA_CLUSTERS     how many cluster rows the matrix has (default 3)
//
// Logs in through the form, sees every cluster Synced and Healthy, checks each page with
// axe-core (any serious or critical violation fails), opens the application, rolls it back to
// revision A with the button of its history, and — without reloading — watches the live
// updates until every cluster shows A and Synced. Every wait is bounded; the whole script
// stops itself after three minutes.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { accessibility, env, fail, launch, login, newPage, timing, watchdog } from './browser.mjs';

watchdog(180);
const base = env('FLOTILLA_URL').replace(/\/$/, '');
const token = env('FLOTILLA_TOKEN');
const app = env('FLOTILLA_APP');
const revisionA = env('FLOTILLA_REVISION_A');
const shortA = revisionA.slice(0, 7);
const shots = env('FLOTILLA_SCREENSHOTS');
const clusters = Number(process.env.FLOTILLA_CLUSTERS || 3);
mkdirSync(shots, { recursive: true });

const started = Date.now();
const step = (what) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s] ${what}`);
const problems = [];

const browser = await launch();
step(`Chromium ${browser.version()}`);
try {
  const page = await newPage(browser);

  // The login page, before anyone is logged in.
  await page.goto(`${base}/login`);
  await page.locator('form#login').waitFor();
  problems.push(...(await accessibility(page, 'login')));
  await login(page, base, token);
  step('logged in through form#login');

  // The overview: every cluster a row, the application's cells Synced and Healthy.
  const matrix = page.locator('table#matrix');
  await matrix.waitFor();
  await page.waitForFunction(
    ({ app, clusters }) => {
      const rows = document.querySelectorAll('table#matrix tr[data-cluster]');
      if (rows.length !== clusters) return false;
      return [...rows].every((row) => {
        const cell = row.querySelector(`td[data-column="${CSS.escape(app)}"]`);
        return cell && cell.dataset.sync === 'Synced' && cell.dataset.health === 'Healthy';
      });
    },
    { app, clusters },
    { timeout: 30_000 },
  ).catch(async () => {
    const seen = await page.locator('table#matrix tr[data-cluster]').evaluateAll((rows) =>
      rows.map((r) => `${r.dataset.cluster}: ${[...r.querySelectorAll('td[data-column]')]
        .map((c) => `${c.dataset.column}=${c.dataset.sync}/${c.dataset.health} (${c.title})`).join(', ')}`));
    fail(`the matrix does not show ${clusters} clusters with ${app} Synced/Healthy:\n  ${seen.join('\n  ')}`);
  });
  const names = await page.locator('table#matrix tr[data-cluster]').evaluateAll((rows) => rows.map((r) => r.dataset.cluster));
  const counts = (await page.locator('#counts').innerText()).replace(/\s+/g, ' ').trim();
  step(`matrix: ${names.join(', ')} all Synced/Healthy; #counts: ${counts}`);
  for (const field of ['selector', 'project', 'cluster', 'app', 'status', 'problems']) {
    if ((await page.locator(`form#filters [name="${field}"]`).count()) === 0) {
      problems.push(`overview: form#filters has no field ${field}`);
    }
  }
  const overview = await timing(page);
  problems.push(...(await accessibility(page, 'overview')));
  await page.screenshot({ path: join(shots, 'overview.png'), fullPage: true });
  step(`overview: server ${overview.server.toFixed(0)} ms, load ${overview.load.toFixed(0)} ms`);

  // The application, from its column header.
  await Promise.all([
    page.waitForURL((url) => url.pathname === `/apps/${app}`),
    page.locator(`table#matrix th[data-column="${app}"] a[href="/apps/${app}"]`).click(),
  ]);
  await page.locator('table#clusters').waitFor();
  await page.waitForFunction(() => document.body.dataset.live === 'connected', null, { timeout: 15_000 })
    .catch(async () => fail(`the live updates never connected: body[data-live] is ${
      await page.evaluate(() => JSON.stringify(document.body.dataset.live))}`));
  step('application page, live updates connected');
  problems.push(...(await accessibility(page, 'application')));
  await page.screenshot({ path: join(shots, 'app-before-rollback.png'), fullPage: true });

  // Roll back with the button of revision A's history row.
  const button = page.getByRole('button', { name: `Roll back to ${shortA}` }).first();
  await button.waitFor();
  let navigations = 0;
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame()) navigations += 1;
  });
  const clicked = Date.now();
  await button.click();
  // A plain form posts and lands back on the page (one navigation); a scripted one does not.
  await page.waitForLoadState('load');
  await page.waitForURL((url) => url.pathname === `/apps/${app}`, { timeout: 15_000 })
    .catch(async () => fail(`after the rollback the browser is on ${page.url()}, not /apps/${app}`));
  await page.waitForFunction(() => document.body.dataset.live === 'connected', null, { timeout: 15_000 })
    .catch(() => fail('the live updates did not reconnect after the rollback'));
  const afterClick = navigations;
  const refreshesBefore = Number(await page.evaluate(() => document.body.dataset.refreshes || 0));
  step(`rolled back to ${shortA} (${afterClick} navigation(s) for the form); watching it land`);

  const landed = () => {
    return page.evaluate(({ shortA, clusters }) => {
      const rows = [...document.querySelectorAll('table#clusters tr[data-cluster]')];
      const seen = rows.map((r) => ({
        cluster: r.dataset.cluster,
        revision: r.querySelector('.revision')?.textContent.trim(),
        sync: r.querySelector('.sync')?.textContent.trim(),
        health: r.querySelector('.health')?.textContent.trim(),
        why: r.querySelector('.why')?.textContent.trim(),
      }));
      const done = rows.length === clusters && seen.every((s) => (s.revision || '').startsWith(shortA) && /^Synced\b/.test(s.sync || ''));
      return { done, seen };
    }, { shortA, clusters });
  };
  let state = await landed();
  const deadline = Date.now() + 60_000;
  while (!state.done && Date.now() < deadline) {
    await page.waitForTimeout(250);
    state = await landed();
  }
  if (!state.done) {
    fail(`revision ${shortA} did not land within 60 s; the page shows:\n  ${state.seen.map((s) => JSON.stringify(s)).join('\n  ')}`);
  }
  const refreshes = Number(await page.evaluate(() => document.body.dataset.refreshes || 0));
  if (navigations !== afterClick) {
    problems.push(`application: the page navigated ${navigations - afterClick} time(s) while the rollback landed; live updates should swap <main>`);
  }
  step(`landed on all ${clusters} clusters ${((Date.now() - clicked) / 1000).toFixed(1)} s after the click ` +
    `(${refreshes - refreshesBefore} live swaps, no reload): ${state.seen.map((s) => `${s.cluster} ${s.revision} ${s.sync}`).join(', ')}`);
  console.log(`rollback landed in ${((Date.now() - clicked) / 1000).toFixed(1)} s`);
  await page.screenshot({ path: join(shots, 'app-after-rollback.png'), fullPage: true });

  // One cluster, and the repositories.
  await page.goto(`${base}/clusters/${encodeURIComponent(names[0])}`);
  await page.locator('main').waitFor();
  if (!(await page.locator('main').innerText()).includes(names[0])) problems.push(`cluster page: ${names[0]} is not named`);
  problems.push(...(await accessibility(page, 'cluster')));
  await page.goto(`${base}/repositories`);
  await page.locator('main').waitFor();
  problems.push(...(await accessibility(page, 'repositories')));
  // The audit log holds the rollback just made, by the admin, from the browser's address.
  await page.goto(`${base}/audit`);
  await page.locator('table#audit').waitFor().catch(() => fail('/audit has no table#audit'));
  const rollback = page.locator('table#audit tr', { hasText: 'rollback' }).first();
  if ((await rollback.count()) === 0) problems.push('audit page: no rollback entry');
  else {
    const text = await rollback.innerText();
    if (!text.includes('admin') || !text.includes('dashboard') || !text.includes('127.0.0.1:')) {
      problems.push(`audit page: the rollback entry lacks who, through what or from where: ${text}`);
    }
  }
  problems.push(...(await accessibility(page, 'audit')));
  step('cluster, repositories and audit pages');
  problems.push(...page.violations.map((v) => `content security policy: ${v}`));
} finally {
  await browser.close();
}

if (problems.length > 0) fail(`${problems.length} problem(s):\n  ${problems.join('\n  ')}`);
step('dashboard checks passed');
