// Single sign-on to the dashboard through a real Dex (started by e2e/tests/sso.rs with the
// hub, which pass what they made in the environment):
//
//   FLOTILLA_URL                      the hub's human API, http://127.0.0.1:PORT
//   FLOTILLA_ISSUER                   Dex's issuer, http://127.0.0.1:PORT/dex
//   FLOTILLA_SSO_MAINTAINER(_PASSWORD) a Dex user whose group maps to maintainer of one project
//   FLOTILLA_SSO_VIEWER(_PASSWORD)     a Dex user whose group maps to viewer of every project
//   FLOTILLA_SSO_VISIBLE              the maintainer's project's application (a matrix column)
//   FLOTILLA_SSO_HIDDEN               an application of another project
//   FLOTILLA_SSO_HIDDEN_MARKER        text only a page about the hidden application would show
//   FLOTILLA_SCREENSHOTS              where the screenshots go (a directory under target/)
//
// A wrong password at Dex opens no session. The maintainer logs in with "Log in with SSO"
// (a#sso on /login) and Dex's login form, lands on the overview, is named in #whoami with
// the grant maintainer:PROJECT, sees the visible column but not the hidden one, finds "Sync
// now" on the visible application, is refused the hidden one, and logs out, after which `/`
// sends them to /login. The viewer, in a fresh browser context, sees both columns and no
// button that changes anything. Every wait is bounded; the script stops itself after 150 s.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { accessibility, env, fail, launch, newPage, watchdog } from './browser.mjs';

watchdog(150);
const base = env('FLOTILLA_URL').replace(/\/$/, '');
const issuer = env('FLOTILLA_ISSUER').replace(/\/$/, '');
const maintainer = { email: env('FLOTILLA_SSO_MAINTAINER'), password: env('FLOTILLA_SSO_MAINTAINER_PASSWORD') };
const viewer = { email: env('FLOTILLA_SSO_VIEWER'), password: env('FLOTILLA_SSO_VIEWER_PASSWORD') };
const visible = env('FLOTILLA_SSO_VISIBLE');
const hidden = env('FLOTILLA_SSO_HIDDEN');
const hiddenMarker = env('FLOTILLA_SSO_HIDDEN_MARKER');
const shots = env('FLOTILLA_SCREENSHOTS');
mkdirSync(shots, { recursive: true });

const started = Date.now();
const step = (what) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s] ${what}`);
const problems = [];
const onHub = (url) => url.origin === new URL(base).origin;

/**
 * From /login through "Log in with SSO" to Dex's password form, and submits it. Dex (v2.45)
 * renders `form` with `input#login[name=login]`, `input#password[name=password]` and
 * `button#submit-login`.
 */
async function throughDex(page, { email, password }) {
  await page.goto(`${base}/login`);
  await page.locator('form#login').waitFor();
  const sso = page.locator('a#sso');
  await sso.waitFor().catch(() => fail('/login has no a#sso ("Log in with SSO")'));
  await Promise.all([
    page.waitForURL((url) => url.href.startsWith(`${issuer}/`) && url.pathname.includes('/auth/local/login'), { timeout: 30_000 }),
    sso.click(),
  ]).catch(() => fail(`a#sso did not lead to Dex's login form under ${issuer}; the browser is on ${page.url()}`));
  await page.locator('input#login').fill(email);
  await page.locator('input#password').fill(password);
  await page.locator('button#submit-login').click();
}

/** Logs in as `user` through Dex; ends on the hub's `/`. */
async function ssoLogin(page, user) {
  await throughDex(page, user);
  await page.waitForURL((url) => onHub(url) && url.pathname === '/', { timeout: 30_000 })
    .catch(async () => fail(`after Dex's login form ${user.email} is on ${page.url()}, not ${base}/:\n${
      (await page.locator('body').innerText().catch(() => '')).slice(0, 600)}`));
  await page.locator('table#matrix').waitFor();
}

/** #whoami names `email` and holds one of `wanted` in data-grants. */
async function checkWhoami(page, email, wanted) {
  const whoami = page.locator('#whoami');
  await whoami.waitFor().catch(() => fail('no #whoami on the overview'));
  const text = (await whoami.innerText()).trim();
  const grants = ((await whoami.getAttribute('data-grants')) || '').split(',').map((g) => g.trim());
  if (!text.includes(email)) problems.push(`#whoami says ${JSON.stringify(text)}, not ${email}`);
  if (!wanted.some((g) => grants.includes(g))) {
    problems.push(`#whoami[data-grants] is ${JSON.stringify(grants)}, without ${wanted.join(' or ')}`);
  }
  step(`#whoami: ${JSON.stringify(text)}, grants ${grants.join(',')}`);
}

/** The matrix's column headers. */
async function columns(page) {
  return page.locator('table#matrix th[data-column]').evaluateAll((ths) => ths.map((th) => th.dataset.column));
}

/** Opens /apps/NAME; returns the HTTP status. */
async function openApp(page, name) {
  const response = await page.goto(`${base}/apps/${encodeURIComponent(name)}`);
  await page.locator('body').waitFor();
  return response ? response.status() : 0;
}

const count = (page, selector) => page.locator(selector).count();

const browser = await launch();
step(`Chromium ${browser.version()}`);
try {
  // A wrong password: Dex says no and the hub opens no session.
  {
    const page = await newPage(browser);
    await throughDex(page, { email: maintainer.email, password: `${maintainer.password}-wrong` });
    // Dex answers 401 with its form again and #login-error ("Invalid Email Address and password.").
    await page.locator('#login-error').waitFor({ timeout: 15_000 })
      .catch(() => fail(`a wrong password at Dex did not bring #login-error; the browser is on ${page.url()}`));
    if (!page.url().startsWith(`${issuer}/`)) fail(`a wrong password left Dex for ${page.url()}`);
    await page.goto(`${base}/`);
    await page.waitForURL((url) => onHub(url) && url.pathname === '/login', { timeout: 15_000 })
      .catch(() => fail(`after a wrong password at Dex, ${base}/ shows ${page.url()} rather than /login`));
    const cookies = (await page.context().cookies(base)).map((c) => c.name);
    step(`wrong password: Dex refused it, / redirects to /login (hub cookies: ${cookies.join(', ') || 'none'})`);
    await page.context().close();
  }

  // The maintainer of one project.
  {
    const page = await newPage(browser);
    await page.goto(`${base}/login`);
    await page.locator('a#sso').waitFor().catch(() => fail('/login has no a#sso ("Log in with SSO")'));
    const href = await page.locator('a#sso').getAttribute('href');
    if (!/\/auth\/sso$/.test(new URL(href, base).pathname)) problems.push(`a#sso points to ${href}, not /auth/sso`);
    problems.push(...(await accessibility(page, 'login with SSO')));

    await ssoLogin(page, maintainer);
    step(`${maintainer.email} logged in through Dex`);
    await page.screenshot({ path: join(shots, 'sso-maintainer-overview.png'), fullPage: true });
    await checkWhoami(page, maintainer.email, ['maintainer:shop']);
    problems.push(...(await accessibility(page, 'overview (SSO maintainer)')));
    const seen = await columns(page);
    if (!seen.includes(visible)) problems.push(`${maintainer.email}: no column ${visible} (columns: ${seen.join(', ')})`);
    if (seen.includes(hidden)) problems.push(`${maintainer.email}: the matrix shows ${hidden}, of a project they may not see`);
    if ((await page.content()).includes(hiddenMarker)) problems.push(`${maintainer.email}: the overview mentions ${hiddenMarker}`);
    step(`columns: ${seen.join(', ')}`);

    let status = await openApp(page, visible);
    if (status !== 200) problems.push(`${maintainer.email}: /apps/${visible} answers ${status}`);
    if ((await count(page, 'form.sync')) === 0) problems.push(`${maintainer.email}: /apps/${visible} has no form.sync ("Sync now")`);
    step(`/apps/${visible}: ${status}, ${await count(page, 'form.sync')} form.sync`);

    status = await openApp(page, hidden);
    const html = await page.content();
    if (status < 400) problems.push(`${maintainer.email}: /apps/${hidden} answers ${status}, not a refusal`);
    if (html.includes(hiddenMarker)) problems.push(`${maintainer.email}: /apps/${hidden} shows ${hiddenMarker}`);
    if ((await count(page, 'form.sync, form.rollback, form.unpin, table#clusters')) > 0) {
      problems.push(`${maintainer.email}: /apps/${hidden} shows the application's clusters or buttons`);
    }
    step(`/apps/${hidden}: refused with ${status}`);

    await page.goto(`${base}/`);
    const logout = page.locator('form.logout button');
    await logout.waitFor().catch(() => fail('no form.logout with a button'));
    // The form posts and is redirected (to /login, or to / which sends a stranger there).
    await Promise.all([
      page.waitForURL((url) => onHub(url) && url.pathname === '/login', { timeout: 15_000 })
        .catch(() => fail(`logging out did not end on /login but on ${page.url()}`)),
      logout.click(),
    ]);
    await page.goto(`${base}/`);
    await page.waitForURL((url) => onHub(url) && url.pathname === '/login', { timeout: 15_000 })
      .catch(() => fail(`after logging out, ${base}/ shows ${page.url()} rather than /login`));
    step(`${maintainer.email} logged out; / redirects to /login`);
    await page.context().close();
  }

  // The viewer of every project, in a browser of their own.
  {
    const page = await newPage(browser);
    await ssoLogin(page, viewer);
    step(`${viewer.email} logged in through Dex`);
    await page.screenshot({ path: join(shots, 'sso-viewer-overview.png'), fullPage: true });
    // `--oidc-group auditors=viewer`: every project, written `viewer` or `viewer:*`.
    await checkWhoami(page, viewer.email, ['viewer', 'viewer:*']);
    const seen = await columns(page);
    for (const name of [visible, hidden]) {
      if (!seen.includes(name)) problems.push(`${viewer.email}: no column ${name} (columns: ${seen.join(', ')})`);
    }
    step(`columns: ${seen.join(', ')}`);
    for (const name of [visible, hidden]) {
      const status = await openApp(page, name);
      if (status !== 200) problems.push(`${viewer.email}: /apps/${name} answers ${status}`);
      const buttons = await count(page, 'form.sync, form.rollback, form.unpin');
      if (buttons > 0) problems.push(`${viewer.email}: /apps/${name} has ${buttons} form(s) that change something`);
      step(`/apps/${name}: ${status}, ${buttons} sync/rollback/unpin forms`);
    }
    await openApp(page, visible);
    await page.screenshot({ path: join(shots, 'sso-viewer-app.png'), fullPage: true });
    problems.push(...(await accessibility(page, 'application (SSO viewer)')));
    problems.push(...page.violations.map((v) => `content security policy: ${v}`));
    await page.context().close();
  }
} finally {
  await browser.close();
}

if (problems.length > 0) fail(`${problems.length} problem(s):\n  ${problems.join('\n  ')}`);
step('SSO checks passed');
