// Live updates of the dashboard. The hub's event stream (/events) says `fleet` when what the
// pages show changed; this script then fetches the current page again and swaps the content
// of <main> (at most once per second), keeping the focus, the scroll positions and open
// <details>. It never touches a form someone is filling in.
//
// body[data-live] is "connected" while the stream is open and "disconnected" after an
// error; body[data-refreshes] counts the swaps (browser tests wait on both).
(() => {
  'use strict';

  const body = document.body;
  // Only logged-in pages (they have the logout form) follow the stream.
  if (!body || !window.EventSource || !document.querySelector('form.logout')) return;

  const MIN_INTERVAL = 1000;
  let timer = null;
  let last = 0;
  let busy = false;
  let again = false;
  let opened = false;

  function schedule() {
    if (timer) return;
    const wait = Math.max(0, MIN_INTERVAL - (Date.now() - last));
    timer = setTimeout(() => {
      timer = null;
      refresh();
    }, wait);
  }

  // Whether a form control in `root` holds something typed or chosen but not submitted.
  function edited(root) {
    for (const el of root.querySelectorAll('input, select, textarea')) {
      if (el.type === 'hidden' || el.type === 'submit') continue;
      if (el.type === 'checkbox' || el.type === 'radio') {
        if (el.checked !== el.defaultChecked) return true;
      } else if (el.tagName === 'SELECT') {
        if ([...el.options].some((o) => o.selected !== o.defaultSelected)) return true;
      } else if (el.value !== el.defaultValue) {
        return true;
      }
    }
    return false;
  }

  const FOCUSABLE = 'a[href], button, input, select, textarea, summary, [tabindex]';

  // Where the focus is inside `main`, in terms that survive a swap.
  function describeFocus(main) {
    const el = document.activeElement;
    if (!el || el === main || !main.contains(el)) return null;
    const all = [...main.querySelectorAll(FOCUSABLE)];
    return {
      id: el.id,
      tag: el.tagName,
      href: el.getAttribute('href'),
      name: el.getAttribute('name'),
      text: el.textContent.trim(),
      index: all.indexOf(el),
    };
  }

  function restoreFocus(main, focus) {
    if (!focus) return;
    let el = focus.id ? document.getElementById(focus.id) : null;
    const all = [...main.querySelectorAll(FOCUSABLE)];
    if (!el) {
      const same = all.filter((c) => c.tagName === focus.tag &&
        c.getAttribute('href') === focus.href &&
        c.getAttribute('name') === focus.name &&
        c.textContent.trim() === focus.text);
      el = same.length === 1 ? same[0] : null;
    }
    if (!el && focus.index >= 0) el = all[Math.min(focus.index, all.length - 1)];
    if (el) el.focus({ preventScroll: true });
  }

  function detailsKey(d) {
    const summary = d.querySelector('summary');
    return d.id || (summary ? summary.textContent.split(':')[0].trim() : '');
  }

  function swap(main, fresh, title) {
    const x = window.scrollX;
    const y = window.scrollY;
    const focus = describeFocus(main);
    const scrollers = [...main.querySelectorAll('.matrix-wrap, .table-wrap')]
      .map((el) => [el.scrollLeft, el.scrollTop]);
    const open = new Map([...main.querySelectorAll('details')].map((d) => [detailsKey(d), d.open]));

    main.replaceChildren(...[...fresh.childNodes].map((n) => document.importNode(n, true)));

    for (const d of main.querySelectorAll('details')) {
      const key = detailsKey(d);
      if (open.has(key)) d.open = open.get(key);
    }
    main.querySelectorAll('.matrix-wrap, .table-wrap').forEach((el, i) => {
      if (scrollers[i]) [el.scrollLeft, el.scrollTop] = scrollers[i];
    });
    if (title) document.title = title;
    restoreFocus(main, focus);
    window.scrollTo(x, y);
    body.dataset.refreshes = String(Number(body.dataset.refreshes || 0) + 1);
  }

  async function refresh() {
    if (busy) {
      again = true;
      return;
    }
    const main = document.querySelector('main');
    if (!main) return;
    if (edited(main)) {
      // Someone is filling in a form: try again later rather than lose what they typed.
      setTimeout(schedule, MIN_INTERVAL);
      return;
    }
    busy = true;
    last = Date.now();
    try {
      const response = await fetch(window.location.href, {
        credentials: 'same-origin',
        cache: 'no-store',
        headers: { Accept: 'text/html' },
      });
      if (response.redirected && new URL(response.url).pathname === '/login') {
        window.location.assign('/login');
        return;
      }
      if (!response.ok) return;
      const doc = new DOMParser().parseFromString(await response.text(), 'text/html');
      const fresh = doc.querySelector('main');
      if (fresh && !edited(main)) swap(main, fresh, doc.title);
    } catch (_) {
      // The next event tries again.
    } finally {
      busy = false;
      if (again) {
        again = false;
        schedule();
      }
    }
  }

  let source = null;
  function connect() {
    source = new EventSource('/events');
    source.addEventListener('open', () => {
      body.dataset.live = 'connected';
      // After a reconnect, changes may have been missed.
      if (opened) schedule();
      opened = true;
    });
    source.addEventListener('fleet', schedule);
    source.addEventListener('bye', () => {
      body.dataset.live = 'disconnected';
    });
    source.addEventListener('error', () => {
      body.dataset.live = 'disconnected';
      if (source.readyState === EventSource.CLOSED) {
        // Refused (the session may have ended: a refresh goes to the login page) or the
        // hub is gone; try again in a while.
        refresh();
        setTimeout(connect, 5000);
      }
    });
  }

  window.addEventListener('pagehide', () => {
    if (source) source.close();
  });
  connect();
})();
