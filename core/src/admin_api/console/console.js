// Keygate console. Plain JS, no framework, no build step.
//
// Logs in with an operator token (POST /console/login sets an HttpOnly
// session cookie and answers the session's CSRF token), then calls
// /api/v1 with that cookie and X-CSRF-Token on every change. Lists are
// refreshed when /api/v1/events names an event that can change them
// (only the event's name is used, never its data), the nodes list also
// every 5 s for heartbeat times, and every list every 5 s while the event
// stream is down.
'use strict';

(() => {
  const POLL_MS = 5000;
  const EVENTS_RETRY_MS = 15000;
  const DAY_MS = 24 * 3600 * 1000;

  // Which lists each event can change.
  const AUDIT_EVENTS = {
    request_filed: ['requests', 'codes'],
    request_approved: ['requests', 'devices', 'certificates'],
    request_rejected: ['requests'],
    code_minted: ['codes'],
    device_enrolled: ['devices', 'certificates'],
    certificate_issued: ['certificates'],
    device_revoked: ['devices', 'certificates', 'nodes'],
    certificate_revoked: ['certificates', 'nodes'],
    operator_added: [],
    operator_revoked: ['session'],
    plugin_loaded: [],
  };
  const NODE_EVENTS = { node_connected: ['nodes'], node_left: ['nodes'] };
  const LISTS = ['requests', 'devices', 'certificates', 'nodes', 'audit', 'codes'];

  const $ = (id) => document.getElementById(id);
  let csrf = null;
  let events = null;
  let eventsRetry = null;
  let timers = [];
  let code = null; // the code on show: { id, expiresAt: ms }
  const seenRequests = new Set();
  let revokedDevices = new Set(); // from the devices list, for certificates

  // ---------- HTTP ----------

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || `HTTP ${status}`);
      this.status = status;
      this.code = body && body.error;
    }
  }

  async function call(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (method !== 'GET' && method !== 'HEAD' && csrf) headers['X-CSRF-Token'] = csrf;
    const res = await fetch(path, {
      method,
      headers,
      credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    const text = await res.text();
    if (text) {
      try { data = JSON.parse(text); } catch { data = { message: text }; }
    }
    if (!res.ok) throw new ApiError(res.status, data);
    return data;
  }

  // An API call from the console: a 401 means the session is gone.
  async function api(method, path, body) {
    try {
      return await call(method, path, body);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401 && csrf) {
        loggedOut('Your session has ended (expired, logged out or operator revoked). Log in again.');
      }
      throw e;
    }
  }

  // ---------- small DOM helpers ----------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === 'class') node.className = v;
      else if (k === 'title') node.title = v;
      else if (k === 'text') node.textContent = v;
      else if (k.startsWith('data-')) node.setAttribute(k, v);
      else if (k === 'onclick') node.addEventListener('click', v);
      else node[k] = v;
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function short(id, n = 16) {
    return el('span', { class: 'mono', title: id, text: id.length > n ? `${id.slice(0, n)}…` : id });
  }

  function when(rfc3339) {
    if (!rfc3339) return '';
    const d = new Date(rfc3339);
    return isNaN(d) ? rfc3339 : d.toLocaleString();
  }

  function ago(rfc3339) {
    const s = Math.round((Date.now() - new Date(rfc3339).getTime()) / 1000);
    if (!isFinite(s)) return '';
    if (s < 2) return 'just now';
    if (s < 120) return `${s} s ago`;
    if (s < 7200) return `${Math.round(s / 60)} min ago`;
    return `${Math.round(s / 3600)} h ago`;
  }

  function fill(list, rows) {
    const tbody = $(list).querySelector('tbody');
    tbody.replaceChildren(...rows);
    $(`${list}-empty`).hidden = rows.length > 0;
    $(list).hidden = rows.length === 0;
    $(`${list}-count`).textContent = rows.length ? `(${rows.length})` : '';
  }

  function banner(message) {
    const b = $('banner');
    b.textContent = message || '';
    b.hidden = !message;
  }

  function failed(what) {
    return (e) => {
      if (e instanceof ApiError && e.status === 401) return;
      banner(`${what}: ${e.message}`);
    };
  }

  // A button that runs `action` once per click, disabled meanwhile.
  function button(label, cls, action) {
    const b = el('button', { type: 'button', class: cls, text: label });
    b.addEventListener('click', async () => {
      b.disabled = true;
      try {
        await action();
        banner('');
      } catch (e) {
        failed(label)(e);
      } finally {
        b.disabled = false;
      }
    });
    return b;
  }

  // ---------- lists ----------

  const loaders = {
    async requests() {
      const all = await api('GET', '/api/v1/requests');
      const pending = all.filter((r) => r.status === 'pending');
      fill('requests', pending.map((r) => {
        const tr = el('tr', { 'data-request-id': r.id, 'data-device-id': r.device_id },
          el('td', { class: 'check', text: r.check_code }),
          el('td', { text: r.name }),
          el('td', {}, short(r.device_id)),
          el('td', { text: r.method.toUpperCase() }),
          el('td', { class: 'mono', text: r.remote_addr }),
          el('td', { title: r.requested_at, text: ago(r.requested_at) }),
          el('td', { class: 'actions' },
            button('Approve', 'approve', async () => {
              await api('POST', `/api/v1/requests/${encodeURIComponent(r.id)}/approve`);
              refresh('requests', 'devices', 'certificates', 'audit');
            }),
            button('Reject', 'reject', async () => {
              const reason = window.prompt(`Reject ${r.name} (check code ${r.check_code})? Reason, told to the device:`, '');
              if (reason === null) return;
              await api('POST', `/api/v1/requests/${encodeURIComponent(r.id)}/reject`, { reason });
              refresh('requests', 'audit');
            })));
        if (!seenRequests.has(r.id)) {
          seenRequests.add(r.id);
          tr.classList.add('new');
        }
        return tr;
      }));
    },

    async devices() {
      const all = await api('GET', '/api/v1/devices');
      const revoked = new Set(all.filter((d) => d.revoked).map((d) => d.device_id));
      const changed = revoked.size !== revokedDevices.size || [...revoked].some((id) => !revokedDevices.has(id));
      revokedDevices = revoked;
      if (changed) refresh('certificates');
      all.sort((a, b) => (a.revoked - b.revoked) || b.enrolled_at.localeCompare(a.enrolled_at));
      fill('devices', all.map((d) => el('tr', { 'data-device-id': d.device_id, class: d.revoked ? 'revoked' : '' },
        el('td', { text: d.name }),
        el('td', {}, short(d.device_id, 24)),
        el('td', { text: d.capabilities.join(', ') }),
        el('td', { text: when(d.enrolled_at) }),
        el('td', { class: 'status' }, d.revoked
          ? el('span', { class: 'status-revoked', title: d.revoke_reason || '', text: `revoked ${when(d.revoked_at)}` })
          : 'active'),
        el('td', { class: 'actions' }, d.revoked ? null : revokeDevice(d.device_id, d.name)))));
    },

    async certificates() {
      const all = await api('GET', '/api/v1/certificates');
      const now = Date.now();
      all.sort((a, b) => b.not_before.localeCompare(a.not_before));
      fill('certificates', all.map((c) => {
        const until = new Date(c.not_after).getTime();
        const expired = until <= now;
        const deviceRevoked = revokedDevices.has(c.device_id);
        const dead = c.revoked || deviceRevoked;
        const expiring = !dead && !expired && until - now < DAY_MS;
        let status = 'valid';
        let statusClass = '';
        if (c.revoked) { status = `revoked ${when(c.revoked_at)}`; statusClass = 'status-revoked'; }
        else if (deviceRevoked) { status = 'device revoked'; statusClass = 'status-revoked'; }
        else if (expired) { status = 'expired'; statusClass = 'status-expired'; }
        else if (expiring) { status = `expires ${inWords(until - now)}`; statusClass = 'status-expiring'; }
        const cls = [dead ? 'revoked' : '', expiring ? 'expiring' : ''].join(' ').trim();
        return el('tr', { 'data-fingerprint': c.fingerprint, 'data-device-id': c.device_id, class: cls },
          el('td', {}, short(c.fingerprint)),
          el('td', {}, short(c.device_id)),
          el('td', { text: when(c.not_before) }),
          el('td', { text: when(c.not_after) }),
          el('td', { class: 'status' }, el('span', { class: statusClass, title: c.revoke_reason || '', text: status })),
          el('td', { class: 'actions' }, dead || expired ? null : button('Revoke', 'revoke', async () => {
            if (!window.confirm(`Revoke certificate ${c.fingerprint.slice(0, 16)}…? The device may pair again.`)) return;
            await api('POST', `/api/v1/certificates/${encodeURIComponent(c.fingerprint)}/revoke`, { reason: 'revoked in the console' });
            refresh('certificates', 'nodes', 'audit');
          })));
      }));
    },

    async nodes() {
      const all = await api('GET', '/api/v1/nodes');
      all.sort((a, b) => a.name.localeCompare(b.name));
      fill('nodes', all.map((n) => el('tr', { 'data-device-id': n.device_id },
        el('td', { text: n.name }),
        el('td', {}, short(n.device_id, 24)),
        el('td', { text: n.capabilities.join(', ') }),
        el('td', { text: when(n.registered_at) }),
        el('td', { class: 'heartbeat', title: n.last_heartbeat, text: ago(n.last_heartbeat) }),
        el('td', { class: 'actions' }, revokeDevice(n.device_id, n.name)))));
    },

    async audit() {
      let entries;
      try {
        entries = await api('GET', '/api/v1/audit');
      } catch (e) {
        if (e instanceof ApiError && e.status === 404) {
          $('audit-empty').textContent = 'This gateway does not serve the audit log (GET /api/v1/audit).';
          fill('audit', []);
          return;
        }
        throw e;
      }
      const rows = [];
      for (const entry of entries.slice().reverse()) {
        for (const ev of entry.events || []) {
          rows.push(el('tr', { 'data-seq': entry.seq },
            el('td', { text: entry.seq }),
            el('td', { title: entry.at, text: when(entry.at) }),
            el('td', { class: 'mono', title: ev.actor, text: ev.actor.length > 28 ? `${ev.actor.slice(0, 28)}…` : ev.actor }),
            el('td', { text: ev.action }),
            el('td', { class: 'mono', title: ev.subject, text: ev.subject.length > 32 ? `${ev.subject.slice(0, 32)}…` : ev.subject }),
            el('td', { class: 'details', text: details(ev.details) })));
        }
        if (rows.length >= 300) break;
      }
      fill('audit', rows);
      $('audit-count').textContent = entries.length ? `(the last ${entries.length} entries)` : '';
    },

    async codes() {
      // The code on show is gone once used (a device proved it) or burned.
      if (!code) return;
      const shown = code;
      const live = await api('GET', '/api/v1/codes');
      if (code === shown && !live.some((c) => c.id === shown.id)) endCode('used');
    },

    async session() {
      // An operator was revoked: if it was us, the next call says 401.
      await api('GET', '/console/session');
    },
  };

  function details(d) {
    if (!d || typeof d !== 'object') return '';
    return Object.entries(d).map(([k, v]) => `${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`).join(', ');
  }

  function inWords(ms) {
    const m = Math.max(0, Math.round(ms / 60000));
    return m < 60 ? `in ${m} min` : `in ${Math.floor(m / 60)} h ${m % 60} min`;
  }

  function revokeDevice(id, name) {
    return button('Revoke', 'revoke', async () => {
      if (!window.confirm(`Revoke device ${name} (${id})? It will never pair or connect again.`)) return;
      await api('POST', `/api/v1/devices/${encodeURIComponent(id)}/revoke`, { reason: 'revoked in the console' });
      refresh('devices', 'certificates', 'nodes', 'audit');
    });
  }

  // Coalesces refreshes: each list is fetched at most once at a time, and
  // once more if asked while it was being fetched.
  const inFlight = {};
  const again = {};
  function refresh(...lists) {
    if (!csrf) return;
    for (const list of lists) {
      if (inFlight[list]) { again[list] = true; continue; }
      inFlight[list] = (async () => {
        try {
          await loaders[list]();
        } catch (e) {
          failed(`Loading ${list}`)(e);
        } finally {
          inFlight[list] = null;
          if (again[list]) { again[list] = false; refresh(list); }
        }
      })();
    }
  }

  // ---------- live updates ----------

  function setLive(mode) {
    const b = $('live');
    b.className = `badge ${mode}`;
    b.textContent = mode === 'live' ? 'live' : 'polling every 5 s';
    b.title = mode === 'live'
      ? 'Lists refresh on the gateway\'s events (/api/v1/events)'
      : 'The event stream is not available: lists are polled';
  }

  function connectEvents() {
    if (events || !csrf || typeof EventSource === 'undefined') {
      if (typeof EventSource === 'undefined') setLive('polling');
      return;
    }
    setLive('polling');
    events = new EventSource('/api/v1/events');
    events.onopen = () => {
      setLive('live');
      // Whatever happened while it was down.
      refresh(...LISTS);
    };
    events.onerror = () => {
      if (!events || events.readyState !== EventSource.CLOSED) {
        setLive('polling');
        return; // the browser reconnects by itself
      }
      events = null;
      setLive('polling');
      clearTimeout(eventsRetry);
      eventsRetry = setTimeout(connectEvents, EVENTS_RETRY_MS);
    };
    for (const [name, lists] of Object.entries(AUDIT_EVENTS)) {
      events.addEventListener(name, () => refresh(...lists, 'audit'));
    }
    for (const [name, lists] of Object.entries(NODE_EVENTS)) {
      events.addEventListener(name, () => refresh(...lists));
    }
    // Events were missed: read everything again.
    events.addEventListener('resync', () => refresh(...LISTS));
  }

  function disconnectEvents() {
    if (events) events.close();
    events = null;
    clearTimeout(eventsRetry);
  }

  // ---------- pairing codes ----------

  async function mint(ev) {
    ev.preventDefault();
    $('code-error').textContent = '';
    const kind = $('mint-kind').value;
    const ttl = $('mint-ttl').value.trim();
    $('mint').disabled = true;
    try {
      const minted = await api('POST', '/api/v1/codes', ttl ? { kind, ttl } : { kind });
      showCode(minted);
      refresh('audit');
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) $('code-error').textContent = e.message;
    } finally {
      $('mint').disabled = false;
    }
  }

  function showCode(minted) {
    $('code').hidden = false;
    const pin = $('code-pin');
    const qr = $('code-qr');
    const uri = $('code-uri');
    pin.hidden = qr.hidden = uri.hidden = true;
    qr.replaceChildren();
    if (minted.kind === 'pin') {
      pin.textContent = minted.pin;
      pin.hidden = false;
    } else {
      // The SVG is parsed as a document of its own and its root imported:
      // no markup is handed to innerHTML, and the CSP runs nothing in it.
      const doc = new DOMParser().parseFromString(minted.svg, 'image/svg+xml');
      const svg = doc.documentElement;
      if (svg && svg.nodeName === 'svg') {
        const node = document.importNode(svg, true);
        node.setAttribute('role', 'img');
        node.setAttribute('aria-label', 'Pairing QR code');
        qr.append(node);
        qr.hidden = false;
      }
      uri.textContent = minted.uri;
      uri.hidden = false;
    }
    code = { id: minted.id, expiresAt: new Date(minted.expires_at).getTime() };
    $('code-label').textContent = 'Expires in';
    $('code-expiry').textContent = `(${when(minted.expires_at)})`;
    tick();
  }

  function tick() {
    if (!code) return;
    const left = Math.max(0, Math.round((code.expiresAt - Date.now()) / 1000));
    const c = $('code-countdown');
    if (left === 0) {
      endCode('expired');
      return;
    }
    c.classList.remove('expired');
    const m = Math.floor(left / 60);
    const s = String(left % 60).padStart(2, '0');
    c.textContent = `${m}:${s}`;
  }

  // The code on show can no longer be used: say why and hide it.
  function endCode(why) {
    const c = $('code-countdown');
    $('code-label').textContent = why === 'used' ? 'This code is used up:' : 'This code has';
    c.textContent = why === 'used' ? 'a device proved it, or it was burned' : 'expired';
    c.classList.add('expired');
    $('code-pin').hidden = true;
    $('code-qr').hidden = true;
    $('code-uri').hidden = true;
    $('code-expiry').textContent = '';
    code = null;
  }

  // ---------- audit verify ----------

  async function verify() {
    const v = $('audit-verdict');
    v.className = 'verdict';
    v.textContent = 'checking…';
    try {
      const r = await api('GET', '/api/v1/audit/verify');
      if (r.ok) {
        v.className = 'verdict ok';
        v.textContent = `Intact: ${r.entries} entries, hash chain verified.`;
      } else {
        const b = r.broken || {};
        v.className = 'verdict broken';
        v.textContent = `BROKEN at entry ${b.seq} (${b.key}): ${b.reason}`;
      }
    } catch (e) {
      v.className = 'verdict broken';
      v.textContent = e instanceof ApiError && e.status === 404
        ? 'This gateway does not serve GET /api/v1/audit/verify.'
        : `Cannot verify: ${e.message}`;
    }
  }

  // ---------- session ----------

  function loggedIn(info) {
    csrf = info.csrf_token;
    $('whoami').textContent = `operator: ${info.operator}`;
    $('logout').hidden = false;
    $('login-view').hidden = true;
    $('console-view').hidden = false;
    banner('');
    refresh(...LISTS);
    connectEvents();
    timers.push(setInterval(() => refresh('nodes'), POLL_MS));
    timers.push(setInterval(() => {
      if (!events || events.readyState !== EventSource.OPEN) refresh('requests', 'devices', 'certificates', 'audit', 'codes');
    }, POLL_MS));
    timers.push(setInterval(tick, 1000));
  }

  function loggedOut(message) {
    csrf = null;
    disconnectEvents();
    timers.forEach(clearInterval);
    timers = [];
    code = null;
    $('whoami').textContent = '';
    $('logout').hidden = true;
    $('console-view').hidden = true;
    $('login-view').hidden = false;
    $('live').className = 'badge';
    $('live').textContent = 'logged out';
    $('login-error').textContent = message || '';
    $('token').value = '';
    $('token').focus();
  }

  async function login(ev) {
    ev.preventDefault();
    $('login-error').textContent = '';
    const token = $('token').value.trim();
    try {
      const info = await call('POST', '/console/login', { token });
      $('token').value = '';
      loggedIn(info);
    } catch (e) {
      $('login-error').textContent = e instanceof ApiError && e.status === 401
        ? 'Refused: that token is not a live operator\'s.'
        : `Cannot log in: ${e.message}`;
    }
  }

  async function logout() {
    try {
      await call('POST', '/console/logout');
    } catch (e) {
      // The session may be gone already: either way we are logged out.
    }
    loggedOut('Logged out.');
  }

  async function start() {
    $('login-form').addEventListener('submit', login);
    $('logout').addEventListener('click', logout);
    $('mint-form').addEventListener('submit', mint);
    $('audit-verify').addEventListener('click', verify);
    try {
      loggedIn(await call('GET', '/console/session'));
    } catch (e) {
      loggedOut('');
    }
  }

  document.addEventListener('DOMContentLoaded', start);
})();
