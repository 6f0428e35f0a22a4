// Baton's web UI: a live view of the sagas of one host, served by the host itself.
//
// Vanilla JavaScript, no framework and no build step. The page is an ordinary client of the
// HTTP API (README, "The HTTP API"):
//
// - the sagas: GET /v1/sagas, read again every 10 s and on every `resync` event;
// - the live feed: GET /v1/events, server-sent events read with fetch() (an EventSource
//   cannot send the token), each `saga` event the record as just committed by this host;
// - a saga: GET /v1/sagas/{id}, its history, its sub-sagas (?parent=) and the outline of the
//   definition it runs (GET /v1/workflows/{name}?hash=) to draw its state machine;
// - the actions: POST /v1/sagas (start), .../signals/{name}, .../cancel, .../retry.
//
// Every request carries `Authorization: Bearer <token>` once a token is known; a 401 asks
// for it, keeps it in localStorage and tries again. Views are routed by the URL's fragment:
// `#/` (the list, with `?status=&workflow=&q=` filters) and `#/sagas/ID`.
'use strict';

(() => {
  const STATUSES = ['running', 'compensating', 'completed', 'compensated', 'failed'];
  const TERMINAL = new Set(['completed', 'compensated', 'failed']);
  /** How often a view reads the store again: another host may move sagas on. */
  const REFRESH_MS = 10000;
  /** How many sagas the list reads at first; "Show more" adds as many. */
  const LIST_PAGE = 200;
  /** A stream that says nothing for this long is dead (the host sends a comment every 15 s). */
  const FEED_SILENCE_MS = 45000;
  /** Iterations of a for_each drawn before "show all". */
  const ITERATIONS_SHOWN = 24;
  /** History entries shown before "show all". */
  const HISTORY_SHOWN = 300;
  const TOKEN_KEY = 'baton.token';

  // ---------------------------------------------------------------- DOM and formatting

  /** An element: `h('a', {class: 'x', href, onclick}, 'text', child, [more])`. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el[k] = v;
      else if (k === 'class') el.className = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false || c === '') continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  const $ = (sel, root = document) => root.querySelector(sel);
  const mono = (text) => h('span', { class: 'mono' }, text);
  const pill = (status, label, big) =>
    h('span', { class: `pill s-${status}${big ? ' big' : ''}`, 'data-status': status }, label || status);

  /** Milliseconds since the epoch of an RFC 3339 time (or undefined). */
  const ms = (t) => (t ? Date.parse(t) : undefined);

  /** A duration for people: 850ms, 1.2s, 3m 4s, 2h 5m, 3d 4h. */
  function dur(d) {
    if (d === undefined || d === null || Number.isNaN(d)) return '';
    d = Math.max(0, d);
    if (d < 1000) return `${Math.round(d)}ms`;
    if (d < 10000) return `${(d / 1000).toFixed(1)}s`;
    const s = Math.round(d / 1000);
    if (s < 60) return `${s}s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m}m ${s % 60}s`;
    const hrs = Math.floor(m / 60);
    if (hrs < 24) return `${hrs}h ${m % 60}m`;
    return `${Math.floor(hrs / 24)}d ${hrs % 24}h`;
  }

  /** A time relative to now: "just now", "12s ago", "in 5m". */
  function rel(t) {
    if (t === undefined) return '';
    const d = t - Date.now();
    if (Math.abs(d) < 1500) return 'just now';
    const text = dur(Math.abs(d)).replace(/ .*/, '').replace(/\.\d/, '');
    return d < 0 ? `${text} ago` : `in ${text}`;
  }

  const absolute = (t) => new Date(t).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

  /** A relative time that stays current (the ticker rewrites it), the exact one on hover. */
  function timeEl(t) {
    if (t === undefined) return '';
    return h('time', { datetime: new Date(t).toISOString(), title: absolute(t), 'data-ts': t }, rel(t));
  }

  /** How long from `start` to `end`, or to now (kept current) while there is no end. */
  function durEl(start, end) {
    if (start === undefined) return '';
    if (end !== undefined) return h('span', { class: 'dur' }, dur(end - start));
    return h('span', { class: 'dur', 'data-since': start }, dur(Date.now() - start));
  }

  /** Keep relative times and running durations current. */
  function tick() {
    for (const el of document.querySelectorAll('time[data-ts]')) el.textContent = rel(Number(el.dataset.ts));
    for (const el of document.querySelectorAll('[data-since]')) el.textContent = dur(Date.now() - Number(el.dataset.since));
  }

  /** JSON, indented and coloured, built as text nodes (never parsed as HTML). */
  function jsonView(value) {
    const text = JSON.stringify(value, null, 2) ?? 'undefined';
    const pre = h('pre', { class: 'json' });
    const token = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false|null)\b|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;
    let last = 0;
    for (const m of text.matchAll(token)) {
      pre.append(text.slice(last, m.index));
      const cls = m[1] ? (m[2] ? 'j-key' : 'j-str') : m[3] ? 'j-lit' : 'j-num';
      pre.append(h('span', { class: cls }, m[1] || m[0]));
      if (m[2]) pre.append(m[2]);
      last = m.index + m[0].length;
    }
    pre.append(text.slice(last));
    return pre;
  }

  /** The keys of the `<details>` the user opened, kept across re-renders. */
  const openDetails = new Set();

  /** A collapsible JSON value: `label` and a one-line preview, the whole value inside. */
  function jsonDetails(key, label, value, open) {
    const preview = JSON.stringify(value) ?? '';
    const short = preview.length > 60 ? `${preview.slice(0, 57)}…` : preview;
    const isOpen = openDetails.has(key) || (open && !openDetails.has(`closed:${key}`));
    const d = h('details', { class: 'json', open: isOpen, 'data-key': key },
      h('summary', {}, label, ' ', h('span', { class: 'mono faint' }, short)), jsonView(value));
    d.ontoggle = () => {
      if (d.open) { openDetails.add(key); openDetails.delete(`closed:${key}`); }
      else { openDetails.delete(key); openDetails.add(`closed:${key}`); }
    };
    return d;
  }

  function toast(text, bad) {
    const t = h('div', { class: `toast${bad ? ' bad' : ''}`, role: 'status' }, text);
    const shown = $('#toasts');
    while (shown.children.length >= 3) shown.firstElementChild.remove();
    shown.append(t);
    setTimeout(() => t.remove(), bad ? 8000 : 4000);
  }

  const sleep = (d) => new Promise((r) => setTimeout(r, d));

  // ---------------------------------------------------------------- the API and its token

  /** An error the API answered (`{"error": {"code", "message"}}`), or a network failure. */
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  let token = localStorage.getItem(TOKEN_KEY) || '';
  /** While the token dialog is open: the promise every refused request waits on. */
  let asking = null;

  /**
   * A request to the API. With `raw`, the Response itself (the event stream); otherwise
   * `{data, headers, status}` with the body parsed, or an ApiError for any 4xx or 5xx. A 401
   * asks for the token (once, however many requests were refused) and tries again.
   */
  async function request(method, path, body, { raw = false, signal } = {}) {
    for (;;) {
      const sent = token;
      const headers = {};
      if (sent) headers.Authorization = `Bearer ${sent}`;
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      let res;
      try {
        res = await fetch(path, { method, headers, body, signal, cache: 'no-store' });
      } catch (e) {
        if (signal && signal.aborted) throw e;
        throw new ApiError(0, 'unreachable', `the host did not answer (${e.message}): is baton serve still running?`);
      }
      if (res.status === 401) {
        const why = await errorOf(res);
        // Another request may have brought a new token meanwhile: use it before asking.
        if (token === sent) await askToken(sent ? `The token was refused: ${why.message}` : '');
        continue;
      }
      if (raw) return res;
      if (!res.ok) throw await errorOf(res);
      const text = await res.text();
      return { data: text ? JSON.parse(text) : null, headers: res.headers, status: res.status };
    }
  }

  async function errorOf(res) {
    const text = await res.text().catch(() => '');
    try {
      const e = JSON.parse(text).error;
      return new ApiError(res.status, e.code, e.message);
    } catch {
      return new ApiError(res.status, `http_${res.status}`, text || res.statusText);
    }
  }

  /** Ask for the token in its dialog; resolves once one is entered (and kept). */
  function askToken(reason) {
    if (asking) return asking;
    const dialog = $('#token-dialog');
    const error = $('#token-error');
    error.hidden = !reason;
    error.textContent = reason;
    $('#token-input').value = '';
    asking = new Promise((resolve) => {
      $('#token-form').onsubmit = (ev) => {
        ev.preventDefault();
        const t = $('#token-input').value.trim();
        if (!t) return;
        token = t;
        localStorage.setItem(TOKEN_KEY, t);
        dialog.close();
        asking = null;
        resolve();
      };
    });
    // Nothing works without it: Escape does not close this one.
    dialog.oncancel = (ev) => ev.preventDefault();
    dialog.showModal();
    $('#token-input').focus();
    return asking;
  }

  /** An error, readably: its code and message. */
  function errorText(e) {
    return e instanceof ApiError ? `${e.code}: ${e.message}` : String(e.message || e);
  }

  function showFormError(el, e) {
    el.hidden = false;
    el.replaceChildren(
      e instanceof ApiError ? h('b', {}, e.code) : '',
      e instanceof ApiError ? ` (${e.status || 'no answer'}): ` : '',
      e.message || String(e),
    );
  }

  // ---------------------------------------------------------------- what the page knows

  const store = {
    /** Every saga seen, by id: the latest revision. */
    sagas: new Map(),
    /** The ids the list shows (before filters): the last read, plus live arrivals. */
    listed: new Set(),
    listLoaded: false,
    listError: null,
    /** How many sagas the list reads. */
    limit: LIST_PAGE,
    /** How long the host keeps finished sagas (the `baton-retain` header). */
    retain: null,
    /** GET /v1/workflows, once read. */
    workflows: null,
    /** Outlines by `name@hash`: an outline, `null` (none to be had) or absent (not read yet). */
    outlines: new Map(),
    /** Histories by saga id. */
    histories: new Map(),
    /** Sub-sagas by parent id. */
    children: new Map(),
    /** Ids the host said it does not have. */
    missing: new Set(),
    /** Ids committed since the list was last drawn (their rows flash). */
    flash: new Set(),
  };

  /** Keep `saga` if it is newer than what we have; whether it was. */
  function upsert(saga) {
    const old = store.sagas.get(saga.id);
    if (old && old.revision >= saga.revision) return false;
    store.sagas.set(saga.id, saga);
    store.missing.delete(saga.id);
    return true;
  }

  async function loadList() {
    const { status } = listFilters();
    const reads = [request('GET', `/v1/sagas?limit=${store.limit}`)];
    // Older sagas of the chosen status, beyond the newest page.
    if (status) reads.push(request('GET', `/v1/sagas?limit=${store.limit}&status=${encodeURIComponent(status)}`));
    try {
      const answers = await Promise.all(reads);
      store.retain = answers[0].headers.get('baton-retain');
      const got = answers.flatMap((a) => a.data);
      const oldest = Math.min(...got.map((s) => ms(s.created_at)));
      // Keep live arrivals newer than what the read covered; drop what the host no longer has.
      const kept = [...store.listed].filter((id) => {
        const s = store.sagas.get(id);
        return s && ms(s.created_at) >= oldest;
      });
      store.listed = new Set([...got.map((s) => s.id), ...kept]);
      for (const s of got) upsert(s);
      store.listLoaded = true;
      store.listError = null;
    } catch (e) {
      store.listError = e;
    }
    render();
  }

  async function loadWorkflows() {
    try {
      store.workflows = (await request('GET', '/v1/workflows')).data;
    } catch (e) {
      store.workflows = store.workflows || [];
    }
    render();
  }

  async function loadSaga(id) {
    try {
      const { data } = await request('GET', `/v1/sagas/${encodeURIComponent(id)}`);
      const known = store.sagas.get(data.id);
      // The live feed may have brought a later revision while this read was under way.
      if (!known || known.revision <= data.revision) store.sagas.set(data.id, data);
      store.missing.delete(id);
      const reads = [loadHistory(id)];
      if (data.children && data.children.length) reads.push(loadChildren(id));
      await Promise.all(reads);
    } catch (e) {
      if (e.status === 404) store.missing.add(id);
      else toast(`Cannot read saga ${id}: ${errorText(e)}`, true);
    }
    render();
  }

  async function loadHistory(id) {
    try {
      store.histories.set(id, (await request('GET', `/v1/sagas/${encodeURIComponent(id)}/history`)).data);
    } catch (e) {
      if (e.status !== 404) toast(`Cannot read the history of ${id}: ${errorText(e)}`, true);
    }
    render();
  }

  async function loadChildren(id) {
    try {
      const { data } = await request('GET', `/v1/sagas?parent=${encodeURIComponent(id)}&limit=1000`);
      for (const c of data) upsert(c);
      store.children.set(id, data.map((c) => c.id));
    } catch (e) {
      if (e.status !== 404) toast(`Cannot read the sub-sagas of ${id}: ${errorText(e)}`, true);
    }
    render();
  }

  /** The outline of the definition `saga` runs: an outline, null (none), undefined (reading). */
  function outlineOf(saga) {
    const key = `${saga.workflow}@${saga.workflow_hash || ''}`;
    if (store.outlines.has(key)) return store.outlines.get(key);
    store.outlines.set(key, undefined);
    const hash = saga.workflow_hash ? `?hash=${encodeURIComponent(saga.workflow_hash)}` : '';
    request('GET', `/v1/workflows/${encodeURIComponent(saga.workflow)}${hash}`)
      .then(({ data }) => store.outlines.set(key, indexOutline(data)))
      .catch(() => store.outlines.set(key, null))
      .finally(render);
    return undefined;
  }

  function indexOutline(o) {
    o.byName = new Map(o.blocks.map((b) => [b.name, b]));
    return o;
  }

  // ---------------------------------------------------------------- the live feed

  function setLive(state) {
    const el = $('#live');
    el.dataset.state = state;
    el.textContent = { live: 'Live', connecting: 'connecting…', reconnecting: 'reconnecting…', offline: 'offline' }[state];
    el.title = state === 'live'
      ? "Live: this host's commits arrive as they happen; the page also re-reads the store every 10 s for other hosts'"
      : 'The live feed is away: the page retries, and re-reads the store every 10 s meanwhile';
  }

  /** Read GET /v1/events for ever, reconnecting with backoff when it ends or goes silent. */
  async function runFeed() {
    let backoff = 1000;
    for (;;) {
      const ctrl = new AbortController();
      let silence;
      const arm = () => {
        clearTimeout(silence);
        silence = setTimeout(() => ctrl.abort(), FEED_SILENCE_MS);
      };
      try {
        arm();
        const res = await request('GET', '/v1/events', undefined, { raw: true, signal: ctrl.signal });
        if (!res.ok) throw await errorOf(res);
        setLive('live');
        backoff = 1000;
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          arm();
          buffer = drainEvents(buffer + decoder.decode(value, { stream: true }), onFeedEvent);
        }
      } catch (e) {
        // Fall through to reconnect.
      }
      clearTimeout(silence);
      setLive(backoff > 8000 ? 'offline' : 'reconnecting');
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 15000);
    }
  }

  /** Hand each complete event of `buffer` to `onEvent(name, data)`; returns what is left. */
  function drainEvents(buffer, onEvent) {
    buffer = buffer.replace(/\r\n/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (!line || line.startsWith(':')) continue; // a comment: the keep-alive
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'event') name = value;
        else if (field === 'data') data.push(value);
      }
      if (data.length) onEvent(name, data.join('\n'));
    }
    return buffer;
  }

  /** Debounced history reads, by saga id. */
  const historyTimers = new Map();

  function onFeedEvent(name, data) {
    if (name === 'resync') {
      refresh();
      return;
    }
    if (name !== 'saga') return;
    const saga = JSON.parse(data);
    if (!upsert(saga)) return;
    store.listed.add(saga.id);
    store.flash.add(saga.id);
    const r = currentRoute();
    if (r.view === 'saga' && r.id === saga.id) {
      clearTimeout(historyTimers.get(saga.id));
      historyTimers.set(saga.id, setTimeout(() => loadHistory(saga.id), 250));
      if (saga.children && saga.children.length && !store.children.has(saga.id)) loadChildren(saga.id);
    }
    const parent = saga.parent && saga.parent.saga;
    if (parent) {
      const known = store.children.get(parent) || [];
      if (!known.includes(saga.id)) store.children.set(parent, [...known, saga.id]);
    }
    if (r.view === 'list' || r.id === saga.id || r.id === parent || (saga.children || []).includes(r.id)) render();
  }

  /** Read again what the current view shows. */
  function refresh() {
    const r = currentRoute();
    if (r.view === 'saga') loadSaga(r.id);
    else loadList();
  }

  // ---------------------------------------------------------------- routing

  function currentRoute() {
    const hash = location.hash.replace(/^#/, '') || '/';
    const [path, query] = hash.split('?');
    const params = new URLSearchParams(query || '');
    const m = path.match(/^\/sagas\/(.+)$/);
    if (m) return { view: 'saga', id: decodeURIComponent(m[1]), params };
    return { view: 'list', params };
  }

  const sagaHref = (id) => `#/sagas/${encodeURIComponent(id)}`;

  function listFilters() {
    const p = currentRoute().params;
    return { status: p.get('status') || '', workflow: p.get('workflow') || '', q: p.get('q') || '' };
  }

  function setListFilters(f) {
    const p = new URLSearchParams();
    for (const k of ['status', 'workflow', 'q']) if (f[k]) p.set(k, f[k]);
    const q = p.toString();
    history.replaceState(null, '', `#/${q ? `?${q}` : ''}`);
  }

  let shownView = null;

  function onRoute() {
    const r = currentRoute();
    for (const a of document.querySelectorAll('[data-nav]')) a.classList.toggle('active', r.view === 'list');
    if (r.view === 'saga') {
      shownView = `saga:${r.id}`;
      ui.visit.clear();
      document.title = `${r.id} · Baton`;
      renderNow();
      window.scrollTo(0, 0);
      loadSaga(r.id);
    } else {
      if (shownView !== 'list') list.mount();
      shownView = 'list';
      document.title = 'Sagas · Baton';
      renderNow();
      loadList();
    }
  }

  // ---------------------------------------------------------------- rendering

  /** A busy host commits many sagas a second: draw at most this often. */
  const RENDER_GAP_MS = 150;
  let pending = false;
  let lastRender = 0;

  /** Draw the current view soon (once, however many changes come meanwhile). */
  function render() {
    if (pending) return;
    pending = true;
    const wait = Math.max(0, lastRender + RENDER_GAP_MS - performance.now());
    setTimeout(() => requestAnimationFrame(renderNow), wait);
  }

  function renderNow() {
    pending = false;
    lastRender = performance.now();
    const r = currentRoute();
    if (r.view === 'saga') renderSaga(r.id);
    else list.update();
  }

  // ---------------------------------------------------------------- the list

  const list = {
    /** Build the view's fixed parts (the filters keep their focus across updates). */
    mount() {
      const f = listFilters();
      this.chips = h('div', { class: 'chips', role: 'group', 'aria-label': 'Status' });
      this.workflow = h('select', { 'aria-label': 'Workflow', id: 'filter-workflow' });
      this.workflow.onchange = () => this.set({ workflow: this.workflow.value });
      this.search = h('input', { type: 'search', placeholder: 'Filter by id…', value: f.q, 'aria-label': 'Filter by id', id: 'filter-q' });
      this.search.oninput = () => this.set({ q: this.search.value.trim() });
      this.body = h('div', { class: 'card', id: 'saga-list' });
      this.foot = h('div', { class: 'list-foot' });
      $('#view').replaceChildren(
        h('div', { class: 'toolbar' }, h('h1', {}, 'Sagas'), this.chips, h('span', { class: 'spacer' }), this.workflow, this.search),
        this.body,
        this.foot,
      );
    },

    set(change) {
      const before = listFilters();
      setListFilters({ ...before, ...change });
      if (change.status !== undefined && change.status !== before.status) loadList();
      this.update();
    },

    /** The sagas the filters take, newest first. */
    shown() {
      const f = listFilters();
      const q = f.q.toLowerCase();
      return [...store.listed]
        .map((id) => store.sagas.get(id))
        .filter((s) => s && (!f.status || s.status === f.status) && (!f.workflow || s.workflow === f.workflow))
        .filter((s) => !q || s.id.toLowerCase().includes(q))
        .sort((a, b) => ms(b.created_at) - ms(a.created_at) || (a.id < b.id ? 1 : -1));
    },

    update() {
      if (!this.body || !this.body.isConnected) this.mount();
      const f = listFilters();
      const all = [...store.listed].map((id) => store.sagas.get(id)).filter(Boolean);
      const inWorkflow = all.filter((s) => !f.workflow || s.workflow === f.workflow);
      const count = (st) => inWorkflow.filter((s) => !st || s.status === st).length;
      this.chips.replaceChildren(
        ...['', ...STATUSES].map((st) => {
          const b = h('button', { type: 'button', class: `chip${f.status === st ? ' active' : ''}`, 'data-filter-status': st || 'all' },
            st || 'All', h('span', { class: 'count' }, count(st)));
          b.onclick = () => this.set({ status: st });
          return b;
        }),
      );
      const names = new Set([...(store.workflows || []).map((w) => w.name), ...all.map((s) => s.workflow)]);
      if (f.workflow) names.add(f.workflow);
      this.workflow.replaceChildren(
        h('option', { value: '' }, 'All workflows'),
        ...[...names].sort().map((n) => h('option', { value: n, selected: n === f.workflow }, n)),
      );
      this.workflow.value = f.workflow;
      if (document.activeElement !== this.search) this.search.value = f.q;
      const shown = this.shown();
      this.body.replaceChildren(this.table(shown, all.length));
      this.foot.replaceChildren(...this.footer(shown.length, all.length));
      store.flash.clear();
    },

    table(shown, total) {
      if (!store.listLoaded && store.listError) {
        return h('div', { class: 'empty' }, h('h2', {}, 'The host did not answer'), h('p', {}, errorText(store.listError)));
      }
      if (!store.listLoaded) return h('div', { class: 'empty' }, 'Reading the sagas…');
      if (!total) {
        return h('div', { class: 'empty' },
          h('h2', {}, 'No sagas yet'),
          h('p', {}, 'Start one here, or with ', h('code', {}, 'baton start order --input @workflows/order.input.json'), '. It shows up at once.'),
          h('button', { class: 'button primary', type: 'button', onclick: () => startDialog.open() }, 'Start a saga'));
      }
      if (!shown.length) {
        return h('div', { class: 'empty' }, h('h2', {}, 'No saga matches these filters'),
          h('button', { class: 'button', type: 'button', onclick: () => this.set({ status: '', workflow: '', q: '' }) }, 'Clear the filters'));
      }
      const rows = shown.map((s) => this.row(s));
      return h('table', { class: 'sagas' },
        h('thead', {}, h('tr', {},
          h('th', {}, 'Status'), h('th', {}, 'Saga'), h('th', {}, 'Workflow'), h('th', {}, 'Steps'),
          h('th', {}, 'Now'), h('th', { class: 'num' }, 'Created'), h('th', { class: 'num' }, 'Took'))),
        h('tbody', {}, rows));
    },

    row(s) {
      const tr = h('tr', { 'data-id': s.id, 'data-status': s.status, class: store.flash.has(s.id) ? 'flash' : '' },
        h('td', {}, pill(s.status)),
        h('td', { class: 'id' }, h('a', { href: sagaHref(s.id) }, s.id),
          s.parent ? h('span', { class: 'faint small' }, ' · sub-saga') : ''),
        h('td', {}, s.workflow, h('span', { class: 'faint' }, ` v${s.workflow_version}`)),
        h('td', {}, progress(s)),
        h('td', { class: 'doing' }, doing(s)),
        h('td', { class: 'num' }, timeEl(ms(s.created_at))),
        h('td', { class: 'num' }, durEl(ms(s.created_at), TERMINAL.has(s.status) ? ms(s.updated_at) : undefined)));
      tr.onclick = (ev) => {
        if (ev.target.closest('a')) return;
        location.hash = sagaHref(s.id);
      };
      return tr;
    },

    footer(shown, total) {
      if (!store.listLoaded) return [];
      const parts = [h('span', {}, `${shown} shown of ${total} read`)];
      if (store.retain) parts.push(h('span', {}, `finished sagas are kept ${store.retain === 'forever' ? 'forever' : `for ${store.retain}`}`));
      parts.push(h('span', {}, 'live from this host; re-read every 10 s'));
      if (total >= store.limit) {
        parts.push(h('button', {
          class: 'button small', type: 'button',
          onclick: () => { store.limit += LIST_PAGE; loadList(); },
        }, 'Show more'));
      }
      return parts;
    },
  };

  /** A bar of the saga's step instances by status. */
  function progress(s) {
    const counts = {};
    for (const i of s.steps) counts[i.status] = (counts[i.status] || 0) + 1;
    const bar = h('div', { class: 'progress', title: Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(', ') });
    for (const st of ['completed', 'running', 'failed', 'cancelled', 'pending']) {
      if (!counts[st]) continue;
      const seg = h('span', { class: `seg-${st}` });
      seg.style.flexGrow = counts[st];
      bar.append(seg);
    }
    return h('div', { class: 'small muted' }, bar, `${s.steps.length} instance${s.steps.length === 1 ? '' : 's'}`);
  }

  /** What the saga is doing now, in a few words. */
  function doing(s) {
    const waiting = s.steps.filter((i) => i.waiting);
    const parts = [];
    if (waiting.length) {
      parts.push(waitingText(waiting[0]));
      if (waiting.length > 1) parts.push(` (+${waiting.length - 1} more)`);
    }
    // A failed saga: the undo that failed is what an operator must look at.
    for (const i of s.status === 'failed' ? s.steps.filter((i) => i.compensation && i.compensation.status === 'failed') : []) {
      if (parts.length) parts.push(' · ');
      const e = i.compensation.error;
      parts.push(h('span', { class: 'err' }, `undo of ${i.path} failed${e ? `: ${e.code}` : ''}`));
    }
    if (s.error && s.status !== 'completed') {
      if (parts.length) parts.push(' · ');
      parts.push(h('span', { class: s.status === 'failed' ? 'why' : 'why undone' }, `${s.error.code}: ${s.error.message}`));
    }
    if (!parts.length && s.status === 'completed') parts.push(h('span', { class: 'faint' }, 'done'));
    return parts;
  }

  function waitingText(i) {
    const w = i.waiting;
    const undo = w.phase === 'compensate' ? 'undoing ' : '';
    switch (w.on) {
      case 'signal': return `waiting for signal “${w.signal}” at ${i.path}`;
      case 'sleep': return `${i.path} sleeps until ${new Date(ms(w.due_at)).toLocaleTimeString()}`;
      case 'backoff': return `${undo}${i.path}: retry after attempt ${w.attempt} failed`;
      default: return `${undo}${i.path}${w.attempt > 1 ? ` (attempt ${w.attempt})` : ''}`;
    }
  }

  // ---------------------------------------------------------------- the saga page

  /** What the user chose on the saga page: the visit shown per step, the expanded for_each. */
  const ui = { visit: new Map(), expanded: new Set() };

  const KIND_LABELS = {
    command: 'command', choice: 'choice', parallel: 'parallel', for_each: 'for each', wait: 'wait',
    sleep: 'sleep', sleep_until: 'sleep until', fail: 'fail', workflow: 'sub-saga',
  };

  function renderSaga(id) {
    const view = $('#view');
    const saga = store.sagas.get(id);
    const crumbs = h('div', { class: 'crumbs' }, h('a', { href: '#/' }, 'Sagas'), ' / ',
      saga ? h('a', { href: `#/?workflow=${encodeURIComponent(saga.workflow)}` }, saga.workflow) : '', saga ? ' / ' : '', mono(id));
    if (!saga) {
      const body = store.missing.has(id)
        ? h('div', { class: 'empty' }, h('h2', {}, 'No such saga'),
          h('p', {}, `The host has no saga with id “${id}”: it never existed, or it finished and was deleted after the retention time.`),
          h('a', { class: 'button', href: '#/' }, 'All sagas'))
        : h('div', { class: 'empty' }, 'Reading the saga…');
      view.replaceChildren(crumbs, h('div', { class: 'card' }, body));
      return;
    }
    const outline = outlineOf(saga);
    const history = store.histories.get(id);
    const ctx = context(saga, outline, history);
    view.replaceChildren(
      crumbs,
      sagaHead(saga),
      compensationLane(ctx),
      h('div', { class: 'saga-grid' },
        h('section', { class: 'card', 'aria-label': 'State machine' },
          h('div', { class: 'card-head' }, h('h2', {}, 'State machine'), h('span', { class: 'spacer' }),
            h('span', { class: 'small muted' }, outlineNote(saga, outline))),
          h('div', { class: 'diagram' }, flow(ctx, 'main', 0))),
        h('aside', { class: 'side' }, sidePanel(saga))),
      historyCard(saga, history),
    );
  }

  function outlineNote(saga, outline) {
    if (outline === undefined) return 'reading the definition…';
    if (outline === null) return 'drawn from what ran (the definition is not on this host)';
    return `definition ${saga.workflow_hash || 'loaded now'}`;
  }

  /** What drawing the saga needs: the instances by block run and step, and the history's picks. */
  function context(saga, outline, history) {
    const byRun = new Map();
    saga.steps.forEach((inst, index) => {
      if (!byRun.has(inst.block)) byRun.set(inst.block, new Map());
      const steps = byRun.get(inst.block);
      if (!steps.has(inst.name)) steps.set(inst.name, []);
      steps.get(inst.name).push(index);
    });
    const chose = new Map();
    const caught = new Map();
    for (const e of history || []) {
      if (e.event === 'chose') chose.set(e.step, e.next);
      if (e.event === 'caught') caught.set(e.step, e);
    }
    return { saga, outline: outline || null, byRun, chose, caught };
  }

  function sagaHead(saga) {
    const created = ms(saga.created_at);
    const ended = TERMINAL.has(saga.status) ? ms(saga.updated_at) : undefined;
    const waits = signalWaits(saga);
    const actions = [];
    if (waits.length) actions.push(h('button', { class: 'button primary', id: 'act-signal', type: 'button', onclick: () => signalDialog.open(saga) }, 'Send signal'));
    if (saga.status === 'running') actions.push(h('button', { class: 'button danger', id: 'act-cancel', type: 'button', onclick: () => cancelDialog.open(saga) }, 'Cancel'));
    if (saga.status === 'failed') actions.push(h('button', { class: 'button primary', id: 'act-retry', type: 'button', onclick: () => retrySaga(saga) }, 'Retry compensations'));
    actions.push(h('button', {
      class: 'button', id: 'act-clone', type: 'button', title: 'Start a new saga of this workflow with this input',
      onclick: () => startDialog.open({ workflow: saga.workflow, input: saga.input }),
    }, 'Start another'));
    const facts = [
      h('span', {}, 'Workflow ', h('b', {}, saga.workflow), ` v${saga.workflow_version}`),
      h('span', {}, 'Started ', h('b', {}, timeEl(created))),
      h('span', {}, ended !== undefined ? 'Took ' : 'Running for ', h('b', {}, durEl(created, ended))),
      h('span', {}, 'Updated ', h('b', {}, timeEl(ms(saga.updated_at)))),
      h('span', {}, 'Revision ', h('b', {}, saga.revision)),
    ];
    if (saga.expires_at) facts.push(h('span', {}, 'Deleted ', h('b', {}, timeEl(ms(saga.expires_at)))));
    const banners = [];
    if (saga.parent) {
      banners.push(h('div', { class: 'banner blue' }, 'A sub-saga of ',
        h('a', { href: sagaHref(saga.parent.saga), 'data-parent': saga.parent.saga }, mono(saga.parent.saga)),
        ', started by its step ', mono(saga.parent.step),
        saga.parent.deadline ? [', which stops waiting ', timeEl(ms(saga.parent.deadline))] : '', '.'));
    }
    if (saga.error) {
      const where = saga.error.step ? [' at step ', mono(saga.error.step)] : [];
      const undo = { compensating: 'Undoing what was done, latest first.', compensated: 'Everything done was undone.',
        failed: 'A compensation failed for good: look at it below, fix the cause, then retry.' }[saga.status] || '';
      banners.push(h('div', { class: `banner${saga.status === 'compensating' ? ' amber' : ''}`, id: 'saga-error' },
        h('b', {}, saga.error.code === 'cancelled' ? 'Cancelled' : 'Failed'), where, ': ',
        h('code', {}, saga.error.code), ' — ', saga.error.message.replace(/\.?$/, '.'), ' ', undo));
    }
    if (waits.length && saga.status === 'running') {
      banners.push(h('div', { class: 'banner blue' }, 'Waiting for ',
        waits.map((i, n) => [n ? ', ' : '', 'signal ', h('b', {}, `“${i.waiting.signal}”`), ' at ', mono(i.path),
          i.waiting.due_at ? [' (times out ', timeEl(ms(i.waiting.due_at)), ')'] : '']), '.'));
    }
    return h('section', { class: 'card' },
      h('div', { class: 'saga-head' },
        h('div', {},
          h('div', { class: 'saga-title' }, h('h1', {}, saga.id), h('span', { id: 'saga-status' }, pill(saga.status, null, true))),
          h('div', { class: 'facts' }, facts)),
        h('div', { class: 'actions' }, actions)),
      banners.length ? h('div', { class: 'banners' }, banners) : '');
  }

  /** The instances waiting for a signal now. */
  const signalWaits = (saga) => (TERMINAL.has(saga.status) ? [] : saga.steps.filter((i) => i.waiting && i.waiting.on === 'signal'));

  /** The steps of block `name` as the diagram draws them in run `run`: the outline's, in order,
   * and any step the run has instances of that the outline lacks. */
  function stepsOf(ctx, name, run) {
    const block = ctx.outline && ctx.outline.byName.get(name);
    const steps = block ? [...block.steps] : [];
    const known = new Set(steps.map((s) => s.name));
    const instances = run === null ? null : ctx.byRun.get(run);
    for (const [stepName, indexes] of instances || []) {
      if (!known.has(stepName)) {
        steps.push({ name: stepName, kind: ctx.saga.steps[indexes[0]].kind, unknown: !!block });
        known.add(stepName);
      }
    }
    return steps;
  }

  /** Block `name` as a column of step nodes, for block run `run` (null: not begun). */
  function flow(ctx, name, run) {
    const steps = stepsOf(ctx, name, run);
    if (!steps.length) return h('div', { class: 'flow muted small' }, 'nothing ran yet');
    return h('div', { class: 'flow', 'data-block': name }, steps.map((step, i) => node(ctx, step, i, steps, run)));
  }

  function node(ctx, step, index, steps, run) {
    const saga = ctx.saga;
    const visits = run === null ? [] : ((ctx.byRun.get(run) || new Map()).get(step.name) || []);
    const key = `${run}/${step.name}`;
    const shown = ui.visit.has(key) && visits.includes(ui.visit.get(key)) ? ui.visit.get(key) : visits[visits.length - 1];
    const inst = shown === undefined ? null : saga.steps[shown];
    const status = inst ? inst.status : 'idle';
    const undoing = inst && inst.compensation && inst.compensation.status === 'running';
    const el = h('div', {
      class: `node${undoing ? ' undoing' : ''}`, 'data-step': step.name,
      'data-path': inst ? inst.path : undefined, 'data-status': status,
    });
    el.append(h('div', { class: 'node-head' },
      h('span', { class: 'kind' }, KIND_LABELS[step.kind] || step.kind),
      h('span', { class: 'node-name' }, step.name),
      inst ? pill(inst.status) : h('span', { class: 'small faint' }, 'not reached'),
      visits.length > 1 ? h('span', { class: 'small muted' }, `visited ${visits.length}×`) : '',
      step.unknown ? h('span', { class: 'small faint', title: 'not in the definition read for this saga' }, '(not in the outline)') : ''));
    el.append(h('div', { class: 'node-meta' }, kindMeta(ctx, step, inst), inst ? timing(inst) : ''));
    if (visits.length > 1) el.append(visitChips(saga, key, visits, shown));
    // What an undo waits for is on its own line, below.
    const undoWaits = inst && inst.waiting && inst.waiting.phase === 'compensate' && inst.compensation;
    if (inst && inst.waiting && !undoWaits) {
      const undo = inst.waiting.phase === 'compensate' ? ' undo-phase' : '';
      el.append(h('div', { class: `waiting${undo}` }, waitingLine(inst)));
    }
    if (inst && inst.error) {
      el.append(h('div', { class: 'error' }, h('code', {}, inst.error.code), ' ', inst.error.message,
        inst.status === 'running' ? ' (being retried)' : ''));
    }
    if (inst && inst.uncertain) el.append(h('div', { class: 'node-meta' }, h('span', { class: 'warn' }, 'uncertain: it may have taken effect, so it is compensated with the rest')));
    if (inst && inst.compensation) el.append(undoLine(inst));
    el.append(jumps(ctx, step, index, steps, inst));
    if (inst && inst.input !== undefined && step.kind !== 'for_each') el.append(jsonDetails(`${saga.id}:${inst.path}:in`, 'input', inst.input));
    if (inst && inst.output !== undefined) el.append(jsonDetails(`${saga.id}:${inst.path}:out`, 'output', inst.output));
    if (step.kind === 'parallel') el.append(branches(ctx, step, inst));
    if (step.kind === 'for_each') el.append(iterations(ctx, step, inst));
    return el;
  }

  /** What the step's kind names: its command, signal, sleep, blocks, sub-saga. */
  function kindMeta(ctx, step, inst) {
    const out = [];
    switch (step.kind) {
      case 'command':
        out.push(mono((inst && inst.command) || step.command || ''));
        if (step.compensate) out.push(h('span', {}, 'undo ', mono(step.compensate)));
        break;
      case 'workflow': {
        out.push(h('span', {}, 'runs ', mono(step.workflow || (inst && inst.command ? inst.command.replace(/^saga:/, '') : ''))));
        const child = inst && inst.child;
        if (child) {
          const c = ctx.saga.id !== child && store.sagas.get(child);
          out.push(h('span', {}, '→ ', h('a', { href: sagaHref(child), 'data-child': child }, mono(child)), c ? [' ', pill(c.status)] : ''));
        }
        break;
      }
      case 'wait':
        out.push(h('span', {}, 'signal ', mono(`“${step.signal || (inst && inst.waiting && inst.waiting.signal) || '?'}”`)));
        if (step.timeout) out.push(h('span', {}, `times out after ${step.timeout}`));
        break;
      case 'sleep':
        if (step.duration) out.push(h('span', {}, `for ${step.duration}`));
        break;
      case 'sleep_until':
        if (step.until) out.push(h('span', {}, 'until ', mono(step.until)));
        break;
      case 'fail':
        if (step.code) out.push(h('span', {}, mono(step.code), step.message ? `: ${step.message}` : ''));
        break;
      case 'for_each':
        if (step.items) out.push(h('span', {}, 'over ', mono(step.items)));
        if (step.concurrency > 1) out.push(h('span', {}, `${step.concurrency} at once`));
        break;
      case 'parallel':
        if (step.blocks) out.push(h('span', {}, `${step.blocks.length} branches`));
        break;
      default:
    }
    return out;
  }

  function timing(inst) {
    const start = ms(inst.started_at);
    const end = ms(inst.ended_at);
    return [
      inst.attempts ? h('span', {}, `${inst.attempts} attempt${inst.attempts === 1 ? '' : 's'}`) : '',
      h('span', { title: `started ${absolute(start)}${end ? `, ended ${absolute(end)}` : ''}` }, 'started ', timeEl(start)),
      h('span', {}, end !== undefined ? 'took ' : 'for ', durEl(start, end)),
    ];
  }

  function waitingLine(inst) {
    const w = inst.waiting;
    const due = w.due_at ? ms(w.due_at) : undefined;
    switch (w.on) {
      case 'signal':
        return ['Waiting for signal ', h('b', {}, `“${w.signal}”`), due ? [', times out ', timeEl(due)] : ', no timeout'];
      case 'sleep':
        return ['Sleeping until ', timeEl(due)];
      case 'backoff':
        return [`Attempt ${w.attempt} failed; the next one goes out `, timeEl(due)];
      default:
        return [`Attempt ${w.attempt} is out`, due ? [', deadline ', timeEl(due)] : ''];
    }
  }

  function undoLine(inst) {
    const c = inst.compensation;
    return h('div', { class: 'undo', 'data-undo': c.status },
      '↩ undo ', mono(c.command), ' ', pill(c.status),
      c.attempts ? ` · ${c.attempts} attempt${c.attempts === 1 ? '' : 's'}` : '',
      c.started_at ? [' · ', durEl(ms(c.started_at), ms(c.ended_at))] : '',
      c.error ? [' · ', h('code', {}, c.error.code), ' ', c.error.message] : '',
      inst.waiting && inst.waiting.phase === 'compensate' ? h('div', {}, waitingLine(inst)) : '');
  }

  function visitChips(saga, key, visits, shown) {
    return h('div', { class: 'visits', 'aria-label': 'Visits' }, visits.map((index) => {
      const v = saga.steps[index];
      const chip = h('span', { class: `visit s-${v.status}${index === shown ? ' current' : ''}`, title: `${v.path}: ${v.status}` },
        v.path.replace(/^.*\//, ''));
      chip.onclick = () => { ui.visit.set(key, index); render(); };
      return chip;
    }));
  }

  /** Where the step goes: its jumps (next, choice cases, catches), the one taken highlighted. */
  function jumps(ctx, step, index, steps, inst) {
    const following = steps[index + 1] ? steps[index + 1].name : 'end';
    const out = [];
    const target = (name) => {
      if (name === 'end') return 'end';
      const at = steps.findIndex((s) => s.name === name);
      return at >= 0 && at <= index ? `↺ ${name}` : name;
    };
    const chosen = inst && ctx.chose.get(inst.path);
    for (const c of step.cases || []) {
      out.push(h('span', { class: `jump${chosen === c.next ? ' taken' : ''}` }, `when ${c.when} → ${target(c.next)}`));
    }
    if (step.kind === 'choice' && step.otherwise) {
      const taken = chosen && chosen === step.otherwise && !(step.cases || []).some((c) => c.next === chosen);
      out.push(h('span', { class: `jump${taken ? ' taken' : ''}` }, `otherwise → ${target(step.otherwise)}`));
    }
    if (step.next && step.next !== following) out.push(h('span', { class: 'jump' }, `then → ${target(step.next)}`));
    const caught = inst && ctx.caught.get(inst.path);
    for (const c of step.catch || []) {
      const codes = c.errors.length ? c.errors.join(', ') : 'any error';
      const taken = caught && caught.next === c.next && (!c.errors.length || c.errors.includes(caught.code));
      out.push(h('span', { class: `jump${taken ? ' taken' : ''}` }, `on ${codes} → ${target(c.next)}`));
    }
    return out.length ? h('div', { class: 'jumps' }, out) : '';
  }

  /** A parallel's branches, side by side. */
  function branches(ctx, step, inst) {
    const runs = inst ? inst.children : [];
    const names = step.blocks || runs.map((r) => ctx.saga.blocks[r].block);
    return h('div', { class: 'lanes' }, names.map((name) => {
      const run = runs.find((r) => ctx.saga.blocks[r] && ctx.saga.blocks[r].block === name);
      return lane(ctx, name, run === undefined ? null : run, h('span', { class: 'lane-name' }, name));
    }));
  }

  /** A for_each's iterations, each a lane. */
  function iterations(ctx, step, inst) {
    const block = step.block || (inst && inst.children.length ? ctx.saga.blocks[inst.children[0]].block : null);
    if (!inst || !inst.children.length) {
      if (!block) return '';
      const note = inst && inst.status !== 'running' ? 'no iterations' : 'per item';
      return h('div', { class: 'lanes iterations' }, lane(ctx, block, null, h('span', { class: 'lane-name' }, `${block}`), note));
    }
    const key = `${ctx.saga.id}:${inst.path}`;
    const all = inst.children;
    const showAll = ui.expanded.has(key) || all.length <= ITERATIONS_SHOWN;
    const runs = showAll ? all : all.slice(0, ITERATIONS_SHOWN);
    const lanes = runs.map((r) => {
      const b = ctx.saga.blocks[r];
      const item = b.item === undefined ? '' : JSON.stringify(b.item);
      return lane(ctx, b.block, r, [h('span', { class: 'lane-name' }, `#${b.index}`), h('span', { class: 'item', title: item }, item)]);
    });
    if (!showAll) {
      lanes.push(h('div', { class: 'more' }, `${all.length - runs.length} more iterations `,
        h('button', { class: 'button small', type: 'button', onclick: () => { ui.expanded.add(key); render(); } }, 'Show all')));
    }
    return h('div', { class: 'lanes iterations', 'data-iterations': all.length }, lanes);
  }

  function lane(ctx, name, run, title, note) {
    const b = run === null ? null : ctx.saga.blocks[run];
    return h('div', { class: 'lane', 'data-run': run === null ? undefined : run },
      h('div', { class: 'lane-head' }, title, h('span', { class: 'spacer' }), b ? pill(b.status) : h('span', { class: 'small faint' }, note || 'not begun')),
      b && b.error ? h('div', { class: 'small muted' }, 'ended by ', h('code', {}, b.error.code), ` at ${b.error.step}`) : '',
      flow(ctx, name, run));
  }

  /** The compensation log as a lane, in order of completion: it is undone right to left. */
  function compensationLane(ctx) {
    const saga = ctx.saga;
    const logged = saga.steps.filter((i) => i.seq !== undefined).sort((a, b) => a.seq - b.seq);
    const undoing = ['compensating', 'compensated', 'failed'].includes(saga.status);
    if (!logged.length || (!undoing && !logged.some((i) => i.compensation))) return '';
    const compensateOf = (i) => {
      if (i.compensation) return i.compensation.command;
      const block = ctx.outline && ctx.saga.blocks[i.block] && ctx.outline.byName.get(ctx.saga.blocks[i.block].block);
      const step = block && block.steps.find((s) => s.name === i.name);
      return (step && (step.compensate || (step.workflow ? `saga:${step.workflow}` : ''))) || '';
    };
    const done = logged.filter((i) => i.compensation && i.compensation.status === 'completed').length;
    const chips = [];
    logged.forEach((i, n) => {
      const c = i.compensation;
      const status = c ? c.status : 'pending';
      if (n) chips.push(h('span', { class: 'comp-arrow', 'aria-hidden': 'true' }, '←'));
      chips.push(h('div', { class: 'comp-step', 'data-path': i.path, 'data-status': status },
        h('div', {}, pill(status, c ? null : 'not begun'), h('span', { class: 'faint small' }, `  #${i.seq}`)),
        h('span', { class: 'path' }, i.path),
        h('div', { class: 'muted' }, mono(compensateOf(i))),
        c ? h('div', { class: 'muted' },
          c.attempts ? `${c.attempts} attempt${c.attempts === 1 ? '' : 's'}` : '',
          c.started_at ? [' · ', durEl(ms(c.started_at), ms(c.ended_at))] : '') : '',
        c && c.error ? h('div', { class: 'small' }, h('code', {}, c.error.code), ' ', c.error.message) : ''));
    });
    const bar = h('span', {});
    bar.style.width = `${(100 * done) / logged.length}%`;
    return h('section', { class: 'card comp', id: 'compensation', 'aria-label': 'Compensation' },
      h('div', { class: 'comp-head' },
        h('h2', {}, 'Compensation'),
        h('span', { class: 'small muted' }, 'undone latest first: right to left'),
        h('span', { class: 'spacer' }),
        h('span', { class: 'small', id: 'comp-progress' }, `${done} of ${logged.length} undone`),
        h('div', { class: `comp-bar${done === logged.length ? ' done' : ''}` }, bar)),
      h('div', { class: 'comp-lane' }, chips));
  }

  function sidePanel(saga) {
    const cards = [];
    const card = (title, ...body) => h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h3', {}, title)), h('div', { class: 'card-body' }, body));
    cards.push(card('Input', jsonView(saga.input)));
    if (saga.output !== undefined) cards.push(card('Output', jsonView(saga.output)));
    if (saga.inbox && saga.inbox.length) {
      cards.push(card(`Inbox (${saga.inbox.length})`, saga.inbox.map((s, n) =>
        jsonDetails(`${saga.id}:inbox:${n}`, [mono(s.name), ' ', timeEl(ms(s.received_at))], s.payload))));
    }
    const children = store.children.get(saga.id) || saga.children || [];
    if (children.length) {
      cards.push(card(`Sub-sagas (${children.length})`, children.map((id) => {
        const c = store.sagas.get(id);
        return h('div', { class: 'small' }, c ? pill(c.status) : '', ' ', h('a', { href: sagaHref(id), 'data-child': id }, mono(id)),
          c ? h('span', { class: 'muted' }, ` ${c.workflow}`) : '');
      })));
    }
    if (saga.parent) {
      cards.push(card('Parent',
        h('dl', { class: 'kv' },
          h('dt', {}, 'saga'), h('dd', {}, h('a', { href: sagaHref(saga.parent.saga) }, mono(saga.parent.saga))),
          h('dt', {}, 'step'), h('dd', {}, mono(saga.parent.step)),
          h('dt', {}, 'depth'), h('dd', {}, saga.parent.depth),
          saga.parent.reply ? [h('dt', {}, 'answers'), h('dd', {}, mono(saga.parent.reply.command))] : '')));
    }
    cards.push(card('Record',
      h('dl', { class: 'kv' },
        h('dt', {}, 'hash'), h('dd', {}, mono(saga.workflow_hash || '—')),
        h('dt', {}, 'created'), h('dd', {}, absolute(ms(saga.created_at))),
        h('dt', {}, 'updated'), h('dd', {}, absolute(ms(saga.updated_at))),
        h('dt', {}, 'instances'), h('dd', {}, saga.steps.length),
        h('dt', {}, 'block runs'), h('dd', {}, saga.blocks.length)),
      jsonDetails(`${saga.id}:record`, 'the whole record', saga)));
    return cards;
  }

  const EVENT_CLASS = {
    failed: 'bad', step_failed: 'bad', late_result: 'bad', succeeded: 'good', completed: 'good',
    compensation_started: 'undo', cancelled: 'undo', undo_requested: 'undo', retry_requested: 'undo',
    signal_received: 'info', signal_taken: 'info', retry_scheduled: 'info', dispatched: 'info', child_started: 'info',
  };

  function historyCard(saga, history) {
    const head = h('div', { class: 'card-head' }, h('h2', {}, 'History'),
      h('span', { class: 'small muted' }, history ? `${history.length} entries, oldest first` : 'reading…'));
    if (!history) return h('section', { class: 'card history' }, head);
    const key = `${saga.id}:history`;
    const all = ui.expanded.has(key) || history.length <= HISTORY_SHOWN;
    const entries = all ? history : history.slice(history.length - HISTORY_SHOWN);
    const start = ms(saga.created_at);
    const items = entries.map((e) => {
      const at = ms(e.at);
      let cls = EVENT_CLASS[e.event] || '';
      if (e.event === 'finished') cls = e.status === 'completed' ? 'good' : e.status === 'failed' ? 'bad' : 'undo';
      if (e.phase === 'compensate' && cls !== 'bad') cls = 'undo';
      return h('li', { 'data-event': e.event },
        h('span', { class: 'muted', title: absolute(at) }, `+${dur(at - start)}`),
        h('span', { class: 'rev' }, `r${e.revision}`),
        h('span', { class: `ev ${cls}` }, e.event.replace(/_/g, ' ')),
        h('span', { class: 'what' }, historyDetail(e)));
    });
    return h('section', { class: 'card history', id: 'history' }, head,
      !all ? h('div', { class: 'card-body small muted' }, `The first ${history.length - entries.length} entries are hidden. `,
        h('button', { class: 'button small', type: 'button', onclick: () => { ui.expanded.add(key); render(); } }, 'Show all')) : '',
      h('ol', { class: 'timeline' }, items));
  }

  function historyDetail(e) {
    const parts = [];
    if (e.step) parts.push(mono(e.step));
    const skip = new Set(['at', 'revision', 'event', 'step']);
    for (const [k, v] of Object.entries(e)) {
      if (skip.has(k) || v === '' || v === null || v === undefined) continue;
      const text = typeof v === 'string' ? v : JSON.stringify(v);
      parts.push(h('span', {}, `  ${k} `, h('span', { class: 'mono' }, text)));
    }
    return parts;
  }

  // ---------------------------------------------------------------- actions

  /** The status line under a JSON field: valid, or where it is not. */
  function checkJson(textarea, status, { emptyOk = false, required = [] } = {}) {
    const text = textarea.value;
    if (!text.trim()) {
      textarea.classList.toggle('invalid', !emptyOk);
      status.className = `json-status${emptyOk ? '' : ' bad'}`;
      status.textContent = emptyOk ? 'Empty: sends null' : 'Enter a JSON value, e.g. {}';
      return { ok: emptyOk, value: null };
    }
    try {
      const value = JSON.parse(text);
      textarea.classList.remove('invalid');
      const missing = value && typeof value === 'object' && !Array.isArray(value) ? required.filter((k) => !(k in value)) : [];
      status.className = 'json-status';
      status.textContent = missing.length ? `Valid JSON, but the schema requires ${missing.join(', ')}` : 'Valid JSON';
      if (missing.length) status.className = 'json-status bad';
      return { ok: true, value };
    } catch (e) {
      textarea.classList.add('invalid');
      status.className = 'json-status bad';
      status.textContent = `Not JSON: ${jsonErrorWhere(text, e.message)}`;
      return { ok: false };
    }
  }

  /** A JSON.parse error with its line and column, when the engine gave a position. */
  function jsonErrorWhere(text, message) {
    const m = message.match(/position (\d+)/);
    if (!m || /line \d+/.test(message)) return message;
    const before = text.slice(0, Number(m[1]));
    const line = before.split('\n').length;
    const column = before.length - before.lastIndexOf('\n');
    return `${message} (line ${line}, column ${column})`;
  }

  /** A value that fits the shape of a schema's required properties, to start from. */
  function skeleton(schema) {
    if (!schema || typeof schema !== 'object') return {};
    const props = schema.properties || {};
    const out = {};
    for (const k of schema.required || []) {
      const t = (props[k] || {}).type;
      out[k] = t === 'string' ? '' : t === 'integer' || t === 'number' ? (props[k].minimum || 0) : t === 'boolean' ? false : t === 'array' ? [] : {};
    }
    return out;
  }

  function wireClose(dialog) {
    for (const b of dialog.querySelectorAll('[data-close]')) b.onclick = () => dialog.close();
  }

  const startDialog = {
    async open(prefill) {
      const dialog = $('#start-dialog');
      wireClose(dialog);
      $('#start-error').hidden = true;
      $('#start-id').value = '';
      if (!store.workflows || !store.workflows.length) await loadWorkflows();
      const select = $('#start-workflow');
      const names = (store.workflows || []).map((w) => w.name).sort();
      select.replaceChildren(...names.map((n) => h('option', { value: n }, n)));
      const wanted = (prefill && prefill.workflow) || localStorage.getItem('baton.lastWorkflow') || names[0];
      if (names.includes(wanted)) select.value = wanted;
      select.onchange = () => this.pick(select.value);
      this.pick(select.value, prefill && prefill.input);
      $('#start-input').oninput = () => this.check();
      $('#start-form').onsubmit = (ev) => { ev.preventDefault(); this.submit(); };
      dialog.showModal();
      $('#start-input').focus();
    },

    workflow(name) {
      return (store.workflows || []).find((w) => w.name === name);
    },

    /** Show workflow `name`: its description, schema, and an input to start from. */
    pick(name, input) {
      const wf = this.workflow(name);
      $('#start-description').textContent = wf ? wf.description || '' : 'No workflow is loaded on this host.';
      const schema = wf && wf.input_schema;
      $('#start-schema').hidden = !schema;
      $('#start-schema-text').textContent = schema ? JSON.stringify(schema, null, 2) : '';
      const draft = localStorage.getItem(`baton.input.${name}`);
      const value = input !== undefined ? JSON.stringify(input, null, 2) : draft || JSON.stringify(skeleton(schema), null, 2);
      $('#start-input').value = value;
      this.check();
    },

    check() {
      const wf = this.workflow($('#start-workflow').value);
      const required = (wf && wf.input_schema && wf.input_schema.required) || [];
      const r = checkJson($('#start-input'), $('#start-input-status'), { required });
      $('#start-submit').disabled = !r.ok || !wf;
      return r;
    },

    async submit() {
      const r = this.check();
      if (!r.ok) return;
      const workflow = $('#start-workflow').value;
      const id = $('#start-id').value.trim();
      const body = { workflow, input: r.value };
      if (id) body.id = id;
      $('#start-submit').disabled = true;
      try {
        const { data, status } = await request('POST', '/v1/sagas', JSON.stringify(body));
        localStorage.setItem('baton.lastWorkflow', workflow);
        localStorage.setItem(`baton.input.${workflow}`, $('#start-input').value);
        upsert(data);
        store.listed.add(data.id);
        $('#start-dialog').close();
        toast(status === 201 ? `Started ${data.id}` : `${data.id} exists with this input: showing it`);
        location.hash = sagaHref(data.id);
      } catch (e) {
        showFormError($('#start-error'), e);
      } finally {
        $('#start-submit').disabled = false;
      }
    },
  };

  const signalDialog = {
    open(saga) {
      const dialog = $('#signal-dialog');
      wireClose(dialog);
      this.saga = saga;
      const waits = signalWaits(saga);
      const names = [...new Set(waits.map((i) => i.waiting.signal))];
      $('#signal-names').replaceChildren(...names.map((n) => h('option', { value: n })));
      $('#signal-name').value = names[0] || '';
      $('#signal-to').replaceChildren('To ', mono(saga.id),
        waits.length ? [', where ', waits.map((i, n) => [n ? ', ' : '', mono(i.path)]), ' waits'] : '', '.');
      $('#signal-payload').value = JSON.stringify(this.skeletonFor(saga, names[0]), null, 2);
      $('#signal-error').hidden = true;
      $('#signal-payload').oninput = () => this.check();
      $('#signal-form').onsubmit = (ev) => { ev.preventDefault(); this.submit(); };
      this.check();
      dialog.showModal();
      $('#signal-payload').focus();
    },

    /** A payload to start from: what the wait's schema requires, or {}. */
    skeletonFor(saga, name) {
      const outline = outlineOf(saga);
      const wait = outline && outline.blocks.flatMap((b) => b.steps).find((s) => s.kind === 'wait' && s.signal === name);
      return skeleton(wait && wait.schema);
    },

    check() {
      const r = checkJson($('#signal-payload'), $('#signal-payload-status'), { emptyOk: true });
      $('#signal-submit').disabled = !r.ok;
      return r;
    },

    async submit() {
      const r = this.check();
      const name = $('#signal-name').value.trim();
      if (!r.ok || !name) return;
      $('#signal-submit').disabled = true;
      const path = `/v1/sagas/${encodeURIComponent(this.saga.id)}/signals/${encodeURIComponent(name)}`;
      try {
        const { data } = await request('POST', path, $('#signal-payload').value.trim() ? $('#signal-payload').value : '');
        upsert(data);
        $('#signal-dialog').close();
        toast(`Signal “${name}” sent to ${data.id}`);
        render();
      } catch (e) {
        showFormError($('#signal-error'), e);
      } finally {
        $('#signal-submit').disabled = false;
      }
    },
  };

  const cancelDialog = {
    open(saga) {
      const dialog = $('#cancel-dialog');
      wireClose(dialog);
      $('#cancel-reason').value = '';
      $('#cancel-error').hidden = true;
      $('#cancel-form').onsubmit = async (ev) => {
        ev.preventDefault();
        const reason = $('#cancel-reason').value.trim();
        $('#cancel-submit').disabled = true;
        try {
          const path = `/v1/sagas/${encodeURIComponent(saga.id)}/cancel`;
          const { data } = await request('POST', path, reason ? JSON.stringify({ reason }) : '');
          upsert(data);
          dialog.close();
          toast(`${data.id} cancelled: compensating`);
          render();
        } catch (e) {
          showFormError($('#cancel-error'), e);
        } finally {
          $('#cancel-submit').disabled = false;
        }
      };
      dialog.showModal();
    },
  };

  async function retrySaga(saga) {
    try {
      const { data } = await request('POST', `/v1/sagas/${encodeURIComponent(saga.id)}/retry`, '');
      upsert(data);
      toast(`${data.id}: its failed compensations run again`);
      render();
    } catch (e) {
      toast(`Retry refused: ${errorText(e)}`, true);
    }
  }

  // ---------------------------------------------------------------- start

  function boot() {
    setLive('connecting');
    $('#start-button').onclick = () => startDialog.open();
    window.addEventListener('hashchange', onRoute);
    onRoute();
    loadWorkflows();
    runFeed();
    setInterval(tick, 1000);
    setInterval(refresh, REFRESH_MS);
  }

  boot();
})();
