// hydra-router dashboard: reads the router API and renders it. Plain
// JavaScript, no framework, no build step, no network access beyond this
// router. Data from the API (service names, hosts, log lines) is only ever put
// in the page as text, never as HTML.
'use strict';

(function () {
  /** An instance is late when its last heartbeat is older than this (Node's dashboard rule). */
  const LATE_AFTER_SECONDS = 5;
  /** Each API call gives up after this long; the next poll tries again. */
  const REQUEST_TIMEOUT_MS = 8000;
  const POLLS = [
    { path: '/v1/router/health', everyMs: 5000, render: renderHealth, fail: renderHealthFailure },
    { path: '/v1/router/version', everyMs: 60000, render: renderVersion },
    { path: '/v1/router/list/nodes', everyMs: 5000, render: renderNodes },
    { path: '/v1/router/list/services', everyMs: 5000, render: renderServicesHealth },
    { path: '/v1/router/stats', everyMs: 1000, render: renderStats },
    { path: '/v1/router/list/wsdir', everyMs: 5000, render: renderWsDirectory },
    { path: '/v1/router/log', everyMs: 15000, render: renderLog },
  ];

  const token = new URLSearchParams(window.location.search).get('token');
  const state = {
    nodes: null, // the list/nodes answer
    healthByInstance: new Map(), // instanceID -> merged list/services object
    problems: new Map(), // API path -> {kind, text}
  };

  /** `path` with this page's `?token=` carried over. */
  function withToken(path) {
    if (!token) return path;
    return path + (path.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(token);
  }

  /** Builds an element: `el('td', {class: 'num'}, 'text', child)`. */
  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value !== undefined && value !== null && value !== false) node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function byId(id) {
    return document.getElementById(id);
  }

  // ---- fetching --------------------------------------------------------------

  /** GET an API path; resolves to the envelope's `result` or rejects with an Error carrying `kind`. */
  async function getResult(path) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
    let response;
    try {
      response = await fetch(withToken(path), {
        cache: 'no-store',
        headers: { accept: 'application/json' },
        signal: controller.signal,
      });
    } catch (error) {
      throw problem('unreachable', `The router did not answer ${path} (${error.name === 'AbortError' ? 'timed out' : error.message}). Retrying.`);
    } finally {
      clearTimeout(timer);
    }
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (response.status === 404 || response.status === 401 || response.status === 403) {
      const hint = token
        ? 'the token in this page\'s address (?token=…) was not accepted'
        : 'this router needs its routerToken: open the dashboard as /?token=<routerToken>';
      throw problem('token', `Router API refused: check ?token= — ${hint}. (GET ${path} answered ${response.status}.)`);
    }
    if (!response.ok || body === null || typeof body !== 'object') {
      const reason = body && body.result && body.result.reason ? `: ${body.result.reason}` : '';
      const what = body === null ? 'an answer that is not JSON' : `${response.status} ${response.statusText}`;
      throw problem('error', `GET ${path} answered ${what}${reason}.`);
    }
    return { result: body.result, body };
  }

  function problem(kind, text) {
    const error = new Error(text);
    error.kind = kind;
    return error;
  }

  function startPolling({ path, everyMs, render, fail }) {
    const tick = async () => {
      try {
        const { result, body } = await getResult(path);
        state.problems.delete(path);
        render(result, body);
      } catch (error) {
        state.problems.set(path, { kind: error.kind || 'error', text: error.message });
        if (!error.kind) console.error(error); // a bug in this page, not an API answer
        if (fail) fail(error);
      }
      renderProblems();
      setTimeout(tick, everyMs);
    };
    tick();
  }

  function renderProblems() {
    const banner = byId('problem');
    const problems = [...state.problems.values()];
    // A refusal explains every other failure: show it alone.
    const refusal = problems.find((p) => p.kind === 'token');
    const shown = refusal ? [refusal] : problems.filter((p, i) => problems.findIndex((q) => q.text === p.text) === i);
    if (shown.length === 0) {
      banner.hidden = true;
      banner.removeAttribute('data-problem');
      banner.replaceChildren();
      document.body.dataset.api = 'ok';
      return;
    }
    banner.hidden = false;
    banner.dataset.problem = refusal ? 'token' : shown[0].kind;
    document.body.dataset.api = refusal ? 'refused' : 'failing';
    banner.replaceChildren(...shown.map((p) => el('p', {}, p.text)));
    if (refusal) {
      const waiting = 'Nothing to show until the router API accepts this page.';
      if (state.nodes === null) {
        byId('router-identity').textContent = 'The router API refused this page.';
        byId('service-list').replaceChildren(el('p', { class: 'muted' }, waiting));
      }
      for (const id of ['traffic-rows', 'log-rows']) {
        const body = byId(id);
        if (body.dataset.loaded !== 'yes') {
          const columns = body.closest('table').querySelectorAll('thead th').length;
          body.replaceChildren(el('tr', {}, el('td', { colspan: columns, class: 'muted' }, waiting)));
        }
      }
    }
  }

  // ---- formatting ------------------------------------------------------------

  function formatDuration(seconds) {
    if (!Number.isFinite(seconds)) return '?';
    seconds = Math.max(0, Math.floor(seconds));
    const d = Math.floor(seconds / 86400);
    const h = Math.floor((seconds % 86400) / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = seconds % 60;
    if (d > 0) return `${d}d ${h}h ${m}m`;
    if (h > 0) return `${h}h ${m}m ${s}s`;
    if (m > 0) return `${m}m ${s}s`;
    return `${s}s`;
  }

  function formatBytes(bytes) {
    if (!Number.isFinite(bytes)) return '?';
    const units = ['B', 'KB', 'MB', 'GB', 'TB'];
    let unit = 0;
    while (bytes >= 1024 && unit < units.length - 1) {
      bytes /= 1024;
      unit += 1;
    }
    return `${bytes.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
  }

  function formatTime(value) {
    const date = typeof value === 'number' || /^\d+$/.test(String(value)) ? new Date(Number(value)) : new Date(String(value));
    if (Number.isNaN(date.getTime())) return String(value);
    return date.toLocaleString();
  }

  function number(value) {
    const n = Number(value);
    return Number.isFinite(n) ? n : NaN;
  }

  // ---- router health and identity ----------------------------------------------

  function renderHealth(health) {
    health = health || {};
    const memory = health.memory && typeof health.memory === 'object' ? health.memory.rss : undefined;
    const facts = [
      ['Status', 'answering'],
      ['Uptime', formatDuration(number(health.uptimeSeconds))],
      ['Memory (RSS)', formatBytes(number(memory))],
      ['Host', health.hostName],
      ['Process', health.processID],
      ['Platform', [health.platform, health.architecture].filter(Boolean).join(' / ')],
      ['Runtime', health.runtime || health.nodeVersion],
      ['Sampled', health.sampledOn ? formatTime(health.sampledOn) : undefined],
    ];
    byId('health-facts').replaceChildren(
      ...facts
        .filter(([, value]) => value !== undefined && value !== '')
        .map(([name, value]) => el('div', {}, el('dt', {}, name), el('dd', {}, value))),
    );
  }

  function renderHealthFailure(error) {
    byId('health-facts').replaceChildren(
      el('div', {}, el('dt', {}, 'Status'), el('dd', { class: 'has-errors' }, error.kind === 'token' ? 'refused' : 'not answering')),
    );
  }

  function renderVersion(result) {
    const version = result && result.version ? `v${result.version}` : '';
    byId('router-version').textContent = version;
  }

  // ---- services and instances ------------------------------------------------------

  function renderNodes(nodes, body) {
    state.nodes = Array.isArray(nodes) ? nodes : [];
    if (body && (body.hostname || body.instanceID)) {
      const parts = [];
      if (body.hostname) parts.push(`running on ${body.hostname}`);
      if (body.instanceID) parts.push(`instance ${body.instanceID}`);
      byId('router-identity').textContent = parts.join(', ');
      if (body.version && !byId('router-version').textContent) byId('router-version').textContent = `v${body.version}`;
    }
    renderServiceList();
    document.body.dataset.nodes = 'loaded';
  }

  function renderServicesHealth(services) {
    state.healthByInstance = new Map();
    for (const service of Array.isArray(services) ? services : []) {
      if (service && service.instanceID) state.healthByInstance.set(String(service.instanceID), service);
    }
    if (state.nodes !== null) renderServiceList();
  }

  /** Seconds since the instance's last heartbeat: the router's `elapsed`, else from `updatedOn`. */
  function heartbeatAge(node) {
    const elapsed = number(node.elapsed);
    if (Number.isFinite(elapsed)) return elapsed;
    const updated = Date.parse(node.updatedOn);
    return Number.isFinite(updated) ? (Date.now() - updated) / 1000 : Infinity;
  }

  function matchesFilter(node, filter) {
    if (!filter) return true;
    return [node.serviceName, node.instanceID, node.hostName, node.ip, node.version]
      .some((field) => field !== undefined && String(field).toLowerCase().includes(filter));
  }

  function renderServiceList() {
    const filter = byId('filter').value.trim().toLowerCase();
    const onlyLate = byId('only-late').checked;
    const groups = new Map();
    let instances = 0;
    let late = 0;
    for (const node of state.nodes || []) {
      if (!node || typeof node !== 'object') continue;
      const age = heartbeatAge(node);
      const isLate = !(age <= LATE_AFTER_SECONDS);
      instances += 1;
      if (isLate) late += 1;
      const name = String(node.serviceName || '(unnamed)');
      if (!groups.has(name)) groups.set(name, []);
      groups.get(name).push({ node, age, isLate });
    }
    byId('nodes-summary').textContent =
      `${groups.size} service${groups.size === 1 ? '' : 's'}, ${instances} instance${instances === 1 ? '' : 's'}` +
      (late ? `, ${late} late` : ', none late');

    const sections = [];
    for (const name of [...groups.keys()].sort()) {
      const all = groups.get(name);
      const shown = all
        .filter((entry) => matchesFilter(entry.node, filter) || name.toLowerCase().includes(filter))
        .filter((entry) => !onlyLate || entry.isLate)
        .sort((a, b) => Number(a.isLate) - Number(b.isLate) || String(a.node.instanceID).localeCompare(String(b.node.instanceID)));
      if (shown.length === 0) continue;
      const lateCount = all.filter((entry) => entry.isLate).length;
      const serviceState = lateCount === 0 ? 'live' : lateCount === all.length ? 'late' : 'degraded';
      sections.push(
        el('section', { class: 'service', 'data-service': name, 'data-state': serviceState, 'aria-label': `service ${name}` },
          el('header', {},
            el('h3', {}, name),
            el('span', { class: 'counts muted' }, `${all.length - lateCount} live` + (lateCount ? `, ${lateCount} late` : ''))),
          describeService(all),
          el('ul', { class: 'instances' }, ...shown.map(renderInstance))),
      );
    }
    const list = byId('service-list');
    if (sections.length > 0) list.replaceChildren(...sections);
    else if (groups.size === 0) list.replaceChildren(el('p', { class: 'muted' }, 'No service instances in hydra:service:nodes.'));
    else list.replaceChildren(el('p', { class: 'muted' }, 'No instance matches the filter.'));
  }

  function describeService(entries) {
    const description = entries.map((entry) => entry.node.serviceDescription).find((d) => d);
    return description ? el('p', { class: 'muted details' }, String(description)) : null;
  }

  function renderInstance({ node, age, isLate }) {
    const iid = String(node.instanceID || '');
    const health = state.healthByInstance.get(iid);
    const address = node.ip || node.port ? `${node.ip || '?'}:${node.port || '?'}` : null;
    const ageText = Number.isFinite(age) ? formatDuration(age) : 'never';
    const badge = isLate
      ? el('span', { class: 'state-badge late' }, `late: last heartbeat ${ageText} ago`)
      : el('span', { class: 'state-badge live' }, 'live');
    const details = [
      address && `at ${address}`,
      node.hostName && `host ${node.hostName}`,
      node.processID !== undefined && `pid ${node.processID}`,
      node.version && `version ${node.version}`,
      !isLate && Number.isFinite(age) && `heartbeat ${ageText} ago`,
    ].filter(Boolean);
    const healthDetails = [];
    if (health) {
      const rss = health.memory && typeof health.memory === 'object' ? number(health.memory.rss) : NaN;
      if (Number.isFinite(number(health.uptimeSeconds))) healthDetails.push(`up ${formatDuration(number(health.uptimeSeconds))}`);
      if (Number.isFinite(rss)) healthDetails.push(`RSS ${formatBytes(rss)}`);
      if (health.runtime || health.nodeVersion) healthDetails.push(`runtime ${health.runtime || `node ${health.nodeVersion}`}`);
    }
    const log = health && Array.isArray(health.log) ? health.log.slice(0, 3) : [];
    return el('li', { class: 'instance', 'data-instance': iid, 'data-state': isLate ? 'late' : 'live' },
      el('div', { class: 'line' }, el('code', { class: 'iid' }, iid), badge),
      el('p', { class: 'details' }, details.join(' · ')),
      healthDetails.length ? el('p', { class: 'details health' }, healthDetails.join(' · ')) : null,
      log.length
        ? el('ul', { class: 'health-log', 'aria-label': 'latest health log entries' },
          ...log.map((entry) => el('li', {}, `${entry.ts ? formatTime(entry.ts) : ''} ${entry.type || ''}: ${entry.msg || entry.message || ''}`.trim())))
        : null);
  }

  // ---- traffic ---------------------------------------------------------------------

  /** Sum of the last `seconds` entries of a per-second array (the last entry is the current second). */
  function lastSeconds(series, seconds) {
    if (!Array.isArray(series)) return 0;
    let total = 0;
    for (let i = Math.max(0, series.length - seconds); i < series.length; i++) total += number(series[i]) || 0;
    return total;
  }

  function sparkline(requests, errors) {
    const width = 120;
    const height = 24;
    const seconds = 60;
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('class', 'spark');
    svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
    svg.setAttribute('role', 'img');
    const tail = (series) => (Array.isArray(series) ? series.slice(-seconds) : []).map((v) => number(v) || 0);
    const req = tail(requests);
    const err = tail(errors);
    const peak = Math.max(1, ...req, ...err);
    svg.setAttribute('aria-label', `requests per second over the last minute, peak ${peak}`);
    const barWidth = width / seconds;
    const bar = (value, i, offset, cls) => {
      if (!value) return;
      const h = Math.max(1, (value / peak) * height);
      const rect = document.createElementNS(ns, 'rect');
      rect.setAttribute('x', ((seconds - offset + i) * barWidth).toFixed(2));
      rect.setAttribute('y', (height - h).toFixed(2));
      rect.setAttribute('width', Math.max(0.5, barWidth - 0.4).toFixed(2));
      rect.setAttribute('height', h.toFixed(2));
      if (cls) rect.setAttribute('class', cls);
      svg.append(rect);
    };
    req.forEach((v, i) => bar(v, i, req.length, null));
    err.forEach((v, i) => bar(v, i, err.length, 'err'));
    return svg;
  }

  function renderStats(result) {
    result = result || {};
    const http = result.httpStats || {};
    const ws = result.wsStats || {};
    const errors = result.errorStats || {};
    const names = [...new Set([...Object.keys(http), ...Object.keys(ws), ...Object.keys(errors)])].sort();
    const rows = names.map((name) => {
      // The last entry is the second in progress; "now" is the last complete second.
      const series = http[name];
      const now = Array.isArray(series) && series.length >= 2 ? number(series[series.length - 2]) || 0 : 0;
      const errorsMinute = lastSeconds(errors[name], 60);
      const errorsHour = lastSeconds(errors[name], 3600);
      return el('tr', { 'data-service': name },
        el('th', { scope: 'row' }, name),
        el('td', { class: 'num', 'data-field': 'now' }, now),
        el('td', {}, sparkline(series, errors[name])),
        el('td', { class: 'num', 'data-field': '1m' }, lastSeconds(series, 60)),
        el('td', { class: 'num', 'data-field': '5m' }, lastSeconds(series, 300)),
        el('td', { class: 'num', 'data-field': '15m' }, lastSeconds(series, 900)),
        el('td', { class: 'num', 'data-field': '1h' }, lastSeconds(series, 3600)),
        el('td', { class: errorsMinute ? 'num has-errors' : 'num', 'data-field': 'errors-1m' }, errorsMinute),
        el('td', { class: errorsHour ? 'num has-errors' : 'num', 'data-field': 'errors-1h' }, errorsHour),
        el('td', { class: 'num', 'data-field': 'ws-1h' }, lastSeconds(ws[name], 3600)));
    });
    byId('traffic-rows').dataset.loaded = 'yes';
    byId('traffic-rows').replaceChildren(
      ...(rows.length ? rows : [el('tr', {}, el('td', { colspan: 10, class: 'muted' }, 'No traffic through this router in the last hour.'))]),
    );
    renderWsCounts(result.wsClients);
  }

  /** This router's live WebSocket counters (`wsClients` of /v1/router/stats). */
  function renderWsCounts(counts) {
    const known = counts && typeof counts === 'object';
    byId('ws-clients-local').textContent = known ? String(number(counts.connected)) : 'n/a';
    byId('ws-accepted').textContent = known ? String(number(counts.accepted)) : 'n/a';
  }

  /** Clients in the directory the routers share (wsdir), on every router. */
  function renderWsDirectory(directory) {
    let clients = 0;
    if (directory && typeof directory === 'object') {
      for (const routerClients of Object.values(directory)) {
        if (routerClients && typeof routerClients === 'object') clients += Object.keys(routerClients).length;
      }
    }
    byId('ws-clients').textContent = String(clients);
  }

  // ---- router log ----------------------------------------------------------------------

  function renderLog(result) {
    const logs = result && Array.isArray(result.logs) ? result.logs.slice() : [];
    logs.reverse(); // newest first
    const rows = logs.slice(0, 200).map((line) =>
      el('tr', { 'data-type': String((line && line.type) || '') },
        el('td', { class: 'mono' }, line && line.ts !== undefined ? formatTime(line.ts) : ''),
        el('td', {}, (line && line.type) || ''),
        el('td', { class: 'entry' }, line && typeof line.entry === 'string' ? line.entry : JSON.stringify(line && line.entry))));
    byId('log-rows').dataset.loaded = 'yes';
    byId('log-rows').replaceChildren(
      ...(rows.length ? rows : [el('tr', {}, el('td', { colspan: 3, class: 'muted' }, 'The router log is empty.'))]),
    );
  }

  // ---- start -------------------------------------------------------------------------

  function start() {
    byId('clear-dead').href = withToken('/v1/router/clear');
    byId('metrics-link').href = withToken('/v1/router/metrics');
    byId('filter').addEventListener('input', () => state.nodes !== null && renderServiceList());
    byId('only-late').addEventListener('change', () => state.nodes !== null && renderServiceList());
    for (const poll of POLLS) startPolling(poll);
  }

  start();
})();
