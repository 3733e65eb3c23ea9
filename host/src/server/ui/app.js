// tollgate's web view. Everything shown comes from the JSON API with the
// token the user signed in with; nothing is judged here. Data is put in the
// page as text (never as HTML); the only markup taken from the server is the
// SVG the host draws for charts, which it escapes.
'use strict';

const TOKEN_KEY = 'tollgate-token';
const $ = (id) => document.getElementById(id);

/** An element with attributes and children (strings become text). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children.flat(Infinity)) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** Calls the API with the session's token; JSON in, JSON (or text) out. */
async function api(path, options = {}) {
  const headers = { Authorization: 'Bearer ' + (options.token || token() || '') };
  if (options.body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method: options.method || 'GET',
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    cache: 'no-store',
    credentials: 'omit',
    referrerPolicy: 'no-referrer',
  });
  const type = response.headers.get('content-type') || '';
  const body = type.includes('json') ? await response.json() : await response.text();
  if (!response.ok) {
    const error = body && body.error ? body.error : {};
    throw new ApiError(response.status, error.message || response.statusText, error.code);
  }
  return body;
}

function badge(word) {
  return h('span', { class: 'badge ' + word }, word);
}

function when(seconds) {
  if (seconds === undefined || seconds === null) return '–';
  const at = new Date(seconds * 1000);
  // A time outside what a Date can show is printed as the number it is.
  return Number.isNaN(at.getTime()) ? String(seconds) : at.toISOString().replace('.000Z', 'Z');
}

function num(v) {
  if (v === undefined || v === null) return '–';
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e-4 && a < 1e7) return String(Number(v.toPrecision(6)));
  return v.toExponential(3);
}

function pct(v) {
  return v === undefined || v === null ? '–' : num(v) + '%';
}

function showError(where, e) {
  where.replaceChildren(h('p', { class: 'error', role: 'alert' }, e instanceof ApiError ? `${e.status}: ${e.message}` : String(e)));
}

// ---- sign-in ----

async function signIn(candidate) {
  const out = $('sign-in-error');
  out.textContent = '';
  try {
    await api('/v1/policies', { token: candidate });
  } catch (e) {
    out.textContent = e.status === 401
      ? 'The server does not know this token.'
      : e.status === 403
        ? 'This token may not read: the view needs a token with the read scope.'
        : `Cannot sign in: ${e.message}`;
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, candidate);
  $('token').value = '';
  start();
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  stopLive();
  $('nav').hidden = true;
  $('view').replaceChildren();
  $('sign-in').hidden = false;
}

// ---- live updates: GET /v1/events, read as a stream with the token header ----

let live = null;
let liveRetry = 3000;
const listeners = new Set();

function stopLive() {
  if (live) live.abort();
  live = null;
  $('live').classList.remove('on');
}

async function startLive() {
  stopLive();
  const controller = new AbortController();
  live = controller;
  try {
    const response = await fetch('/v1/events', {
      headers: { Authorization: 'Bearer ' + token(), Accept: 'text/event-stream' },
      cache: 'no-store',
      credentials: 'omit',
      signal: controller.signal,
    });
    if (response.status === 401 || response.status === 403) {
      // Not this token's to read: stay off rather than ask again.
      live = null;
      return;
    }
    if (!response.ok || !response.body) throw new Error(String(response.status));
    liveRetry = 3000;
    $('live').classList.add('on');
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = 'message';
        const data = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) event = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
        }
        if (event === 'decision' && data.length) {
          const decision = JSON.parse(data.join('\n'));
          for (const f of listeners) f(decision);
        }
      }
    }
  } catch (e) {
    if (controller.signal.aborted) return;
  }
  $('live').classList.remove('on');
  // The server ends streams after a while, and at shutdown, and refuses
  // them past its share: come back, waiting longer each time it fails.
  if (live === controller) {
    setTimeout(() => { if (live === controller) startLive(); }, liveRetry);
    liveRetry = Math.min(liveRetry * 2, 60000);
  }
}

// ---- views ----

const policies = new Map();
async function policy(name) {
  if (!policies.has(name)) policies.set(name, api('/v1/policies/' + encodeURIComponent(name)).catch(() => null));
  return policies.get(name);
}

async function allDecisions(filter) {
  const query = new URLSearchParams({ limit: '1000', ...filter });
  return (await api('/v1/decisions?' + query)).decisions;
}

async function releasesView(view) {
  const decisions = await allDecisions({});
  const latest = new Map();
  for (const d of decisions) {
    const key = d.service + '\u0000' + d.version;
    if (!latest.has(key)) latest.set(key, { last: d, count: 0 });
    latest.get(key).count += 1;
  }
  const rows = [...latest.values()].map(({ last, count }) => h('tr', { 'data-id': last.decision_id },
    h('td', {}, h('a', { href: '#/dora/' + encodeURIComponent(last.service) }, last.service)),
    h('td', {}, h('a', { class: 'release', href: `#/release/${encodeURIComponent(last.service)}/${encodeURIComponent(last.version)}` }, last.version)),
    h('td', {}, h('a', { href: '#/policy/' + encodeURIComponent(last.policy) }, last.policy)),
    h('td', {}, last.stage),
    h('td', {}, badge(last.decision)),
    h('td', { class: 'num' }, count),
    h('td', {}, when(last.recorded_at_ms / 1000)),
    h('td', {}, h('a', { href: '#/decision/' + encodeURIComponent(last.decision_id) }, last.summary)),
  ));
  view.replaceChildren(
    h('h1', {}, 'Releases'),
    h('p', { class: 'muted' }, 'The latest decision of every service and version in the decision log; new decisions appear as they are made.'),
    h('div', { class: 'card' }, rows.length
      ? h('table', { id: 'releases' }, h('thead', {}, h('tr', {}, ['Service', 'Version', 'Policy', 'Stage', 'State', 'Evaluations', 'Last decided', 'Summary'].map((t) => h('th', {}, t)))), h('tbody', {}, rows))
      : h('p', {}, 'No decisions yet.')),
  );
  return () => route();
}

/** What a held release waits for, from its latest decision's record. */
function waitsFor(d) {
  if (d.decision === 'rollback') return 'nothing: it was rolled back';
  if (d.decision === 'promote') return 'nothing: this stage passed';
  const reasons = [];
  for (const plan of d.actions || []) {
    for (const a of plan.actions || []) {
      if (a.type === 'pause') reasons.push(`time: ${a.seconds}s more in the stage`);
    }
  }
  for (const g of d.gates || []) {
    if (g.counted_as !== 'inconclusive') continue;
    if (g.plugin === 'approval' || g.plugin === 'checklist') reasons.push(`approvals: ${g.reason}`);
    else if (g.plugin === 'window') reasons.push(`a window: ${g.reason}`);
    else reasons.push(`data: ${g.name}: ${g.reason}`);
  }
  for (const t of d.triggers || []) {
    if (t.holds && t.fire !== 'none') reasons.push(`trigger ${t.name} to clear: ${t.reason}`);
  }
  if (d.stage_result === 'warning') reasons.push('the score to leave the warn band');
  return reasons.length ? reasons.join('; ') : d.summary;
}

async function releaseView(view, service, version) {
  const decisions = (await allDecisions({ service })).filter((d) => d.version === version).reverse();
  if (!decisions.length) {
    view.replaceChildren(h('h1', {}, `${service} ${version}`), h('p', {}, 'No decisions for this release.'));
    return () => route();
  }
  const latest = decisions[decisions.length - 1];
  const record = await api('/v1/decisions/' + encodeURIComponent(latest.decision_id));
  const pol = await policy(latest.policy);
  const traffic = (stage) => {
    const st = pol && pol.stages.find((x) => x.name === stage);
    return st && st.traffic_percent !== null && st.traffic_percent !== undefined ? st.traffic_percent + '%' : '–';
  };
  const rows = decisions.map((d) => h('tr', { 'data-id': d.decision_id },
    h('td', {}, when(d.recorded_at_ms / 1000)),
    h('td', {}, d.stage),
    h('td', { class: 'num' }, traffic(d.stage)),
    h('td', {}, badge(d.decision)),
    h('td', {}, h('a', { href: '#/decision/' + encodeURIComponent(d.decision_id) }, d.summary)),
  ));
  const approvals = h('div', { id: 'approvals' });
  view.replaceChildren(
    h('h1', {}, `${service} ${version}`),
    h('div', { class: 'card' },
      h('dl', { class: 'kv' },
        h('dt', {}, 'Now'), h('dd', { id: 'current' }, badge(latest.decision), ` ${latest.stage} · ${latest.policy}`),
        h('dt', {}, 'Waits for'), h('dd', { id: 'waits' }, waitsFor(record.decision)),
        h('dt', {}, 'Traffic'), h('dd', {}, traffic(latest.stage)))),
    h('h2', {}, 'Timeline'),
    h('div', { class: 'card' }, h('table', { id: 'timeline' },
      h('thead', {}, h('tr', {}, ['Decided', 'Stage', 'Traffic', 'Decision', 'Summary'].map((t) => h('th', {}, t)))),
      h('tbody', {}, rows))),
    h('h2', {}, 'Approvals and checklist'),
    approvals,
  );
  await approvalsPanel(approvals, service, version, pol);
  return (event) => (event.service === service && event.version === version ? route() : null);
}

async function approvalsPanel(box, service, version, pol) {
  let list = [];
  try {
    list = (await api(`/v1/approvals?${new URLSearchParams({ service, version })}`)).approvals;
  } catch (e) {
    showError(box, e);
    return;
  }
  const stages = pol ? pol.stages.map((st) => st.name) : [];
  const result = h('p', { id: 'approve-result', role: 'status' });
  const stage = h('select', { id: 'approve-stage' }, h('option', { value: '' }, 'every stage'), stages.map((n) => h('option', { value: n }, n)));
  const item = h('input', { id: 'approve-item', placeholder: 'checklist item (leave empty to approve)' });
  const comment = h('input', { id: 'approve-comment', maxlength: '4096' });
  const form = h('form', { id: 'approve-form', method: 'post', onsubmit: async (ev) => {
    ev.preventDefault();
    const body = { service, version };
    if (stage.value) body.stage = stage.value;
    if (item.value.trim()) body.item = item.value.trim();
    if (comment.value) body.comment = comment.value;
    result.className = '';
    try {
      const a = await api('/v1/approvals', { method: 'POST', body });
      result.className = 'ok';
      result.textContent = `Recorded ${a.name} by ${a.approver}.`;
      setTimeout(route, 300);
    } catch (e) {
      result.className = 'error';
      result.textContent = e.status === 403 ? `Not recorded: ${e.message}` : `Not recorded: ${e.status}: ${e.message}`;
    }
  } },
  h('label', { for: 'approve-stage' }, 'Stage'), stage,
  h('label', { for: 'approve-item' }, 'Checklist item'), item,
  h('label', { for: 'approve-comment' }, 'Comment'), comment,
  h('button', { type: 'submit' }, 'Approve'), result);
  box.replaceChildren(h('div', { class: 'card' },
    list.length
      ? h('table', { id: 'approval-list' }, h('thead', {}, h('tr', {}, ['When', 'What', 'Stage', 'Who', 'Groups', 'Comment'].map((t) => h('th', {}, t)))),
        h('tbody', {}, list.map((a) => h('tr', {},
          h('td', {}, when(a.at_ms / 1000)), h('td', {}, a.name), h('td', {}, a.stage || 'every stage'),
          h('td', {}, a.approver), h('td', {}, (a.groups || []).join(', ')), h('td', {}, a.comment)))))
      : h('p', { class: 'muted' }, 'No approvals recorded.'),
    h('details', {}, h('summary', {}, 'Approve this release (needs a token with the approve scope)'), form)));
}

function scoreBar(d) {
  const w = 640; const y = 26;
  const x = (v) => 10 + (v / 100) * (w - 20);
  const svg = s('svg', { class: 'scorebar', viewBox: `0 0 ${w} 56`, width: w, height: 56, role: 'img', 'aria-label': 'score against the bands' },
    s('rect', { x: x(0), y, width: x(d.scoring.warn) - x(0), height: 10, fill: '#fecaca' }),
    s('rect', { x: x(d.scoring.warn), y, width: x(d.scoring.pass) - x(d.scoring.warn), height: 10, fill: '#fde68a' }),
    s('rect', { x: x(d.scoring.pass), y, width: x(100) - x(d.scoring.pass), height: 10, fill: '#bbf7d0' }),
    s('text', { x: x(d.scoring.warn), y: 52, 'text-anchor': 'middle', 'font-size': 11, fill: '#374151' }, `warn ${d.scoring.warn}%`),
    s('text', { x: x(d.scoring.pass), y: 52, 'text-anchor': 'middle', 'font-size': 11, fill: '#374151' }, `pass ${d.scoring.pass}%`));
  if (d.score !== null && d.score !== undefined) {
    svg.append(s('line', { x1: x(d.score), x2: x(d.score), y1: y - 8, y2: y + 18, stroke: '#111827', 'stroke-width': 3 }),
      s('text', { x: x(d.score), y: y - 12, 'text-anchor': 'middle', 'font-size': 12, 'font-weight': 600, fill: '#111827' }, `score ${num(d.score)}%`));
  }
  return svg;
}

function insertSvg(container, markup) {
  const doc = new DOMParser().parseFromString(markup, 'image/svg+xml');
  const root = doc.documentElement;
  if (root && root.namespaceURI === SVG_NS && !doc.querySelector('parsererror')) container.append(document.importNode(root, true));
}

function stateText(hex) {
  if (!hex) return '';
  try {
    const bytes = new Uint8Array(hex.match(/../g).map((b) => parseInt(b, 16)));
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (e) {
    return 'hex ' + hex;
  }
}

async function decisionView(view, rawId) {
  const id = encodeURIComponent(rawId);
  const record = await api('/v1/decisions/' + id);
  const d = record.decision;
  const [explained, charts, text] = await Promise.all([
    api(`/v1/decisions/${id}/explanation`).catch(() => null),
    api(`/v1/decisions/${id}/charts?format=svg`).catch((e) => ({ error: e })),
    api(`/v1/decisions/${id}/policy`).catch((e) => `(${e.message})`),
  ]);
  const byGate = new Map((explained ? explained.gates : []).map((g) => [g.name, g]));
  const gateRows = d.gates.map((g) => {
    const e = byGate.get(g.name) || {};
    return h('tr', { class: 'gate' },
      h('td', {}, badge(g.counted_as)),
      h('td', {}, g.name, g.key ? ' (key)' : '', g.dry_run ? ' (dry run)' : ''),
      h('td', { class: 'num observed' }, num(g.observed)),
      h('td', { class: 'num threshold' }, num(g.threshold)),
      h('td', { class: 'num' }, num(e.distance)),
      h('td', { class: 'num' }, pct(e.distance_percent)),
      h('td', { class: 'num' }, pct(e.score_points), ' of ', pct(e.weight_percent)),
      h('td', {}, g.reason));
  });
  const chartBox = h('div', { class: 'charts', id: 'charts' });
  if (charts && charts.charts) {
    for (const c of charts.charts) insertSvg(chartBox, c.svg);
    if (!charts.charts.length) chartBox.append(h('p', { class: 'muted' }, 'No gate read windowed points.'));
  } else if (charts && charts.error) {
    showError(chartBox, charts.error);
  }
  const replayOut = h('div', { id: 'replay-result', role: 'status' });
  const replayButton = h('button', { id: 'replay', type: 'button', onclick: async () => {
    replayButton.disabled = true;
    replayOut.replaceChildren(h('p', { class: 'muted' }, 'Replaying…'));
    try {
      const r = await api(`/v1/decisions/${id}/replay`, { method: 'POST' });
      const differing = r.findings.filter((f) => !f.identical);
      replayOut.replaceChildren(r.identical
        ? h('p', { class: 'ok' }, `identical: ${r.findings.length} findings replayed from the logged plugins, policy and snapshot`)
        : h('div', {}, h('p', { class: 'diff' }, 'differs'), h('ul', {}, differing.map((f) => h('li', {}, `${f.kind} ${f.name}: ${f.differences.join('; ')}`)))));
    } catch (e) {
      showError(replayOut, e);
    }
    replayButton.disabled = false;
  } }, 'Replay');
  const alternatives = explained ? h('ul', {}, explained.alternatives.map((a) => h('li', {}, h('strong', {}, a.decision), ' ',
    a.changes.length
      ? 'if ' + a.changes.map((set) => set.map((c) => `${c.gate} ${c.to} (was ${c.from})`).join(' and ')).join(', or ')
      : `never: ${a.why_not}`))) : h('p', {}, 'No explanation.');
  const decidedBy = explained ? (explained.decided_by.by === 'gates'
    ? `the gates: ${explained.decided_by.rule}`
    : explained.decided_by.by === 'trigger'
      ? `trigger ${explained.decided_by.name}, which fired ${explained.decided_by.fire}`
      : `the plan of action ${explained.decided_by.name}`) : '–';
  view.replaceChildren(
    h('h1', {}, badge(d.decision), ` ${d.service} ${d.version}`),
    h('p', { class: 'summary', id: 'summary' }, d.summary),
    h('div', { class: 'card' },
      h('dl', { class: 'kv' },
        h('dt', {}, 'Policy'), h('dd', {}, h('a', { href: '#/policy/' + encodeURIComponent(d.policy) }, d.policy), ` · stage ${d.stage} (${d.stage_result})`),
        h('dt', {}, 'Decided'), h('dd', {}, when(d.decided_at ?? d.taken_at), ` · telemetry taken ${when(d.taken_at)}`, d.what_if ? ' · what-if' : ''),
        h('dt', {}, 'Decided by'), h('dd', { id: 'decided-by' }, decidedBy),
        h('dt', {}, 'Release'), h('dd', {}, h('a', { href: `#/release/${encodeURIComponent(d.service)}/${encodeURIComponent(d.version)}` }, 'timeline and approvals')),
        h('dt', {}, 'Decision id'), h('dd', {}, h('code', {}, rawId))),
      scoreBar(d)),
    h('h2', {}, 'Gates'),
    h('div', { class: 'card' }, h('table', { id: 'gates' },
      h('thead', {}, h('tr', {}, ['Counted', 'Gate', 'Observed', 'Threshold', 'Distance', 'Relative', 'Score points', 'Reason'].map((t) => h('th', {}, t)))),
      h('tbody', {}, gateRows))),
    h('h2', {}, 'What the gates read'),
    chartBox,
    h('h2', {}, 'What would have changed it'),
    h('div', { class: 'card', id: 'alternatives' }, alternatives),
    h('h2', {}, 'Triggers'),
    h('div', { class: 'card' }, d.triggers.length ? h('table', { id: 'triggers' },
      h('thead', {}, h('tr', {}, ['Trigger', 'Fired', 'Observed', 'Threshold', 'State read', 'Reason'].map((t) => h('th', {}, t)))),
      h('tbody', {}, d.triggers.map((t) => h('tr', {},
        h('td', {}, t.name), h('td', {}, h('span', { class: 'badge ' + (t.fire === 'none' ? 'none' : t.fire === 'immediate-rollback' ? 'rollback' : 'hold') }, t.fire)),
        h('td', { class: 'num' }, num(t.observed)), h('td', { class: 'num' }, num(t.threshold)),
        h('td', {}, h('code', {}, stateText((record.state_in || {})[t.name]))), h('td', {}, t.reason)))))
      : h('p', { class: 'muted' }, 'No triggers.')),
    h('h2', {}, 'Action plan'),
    h('div', { class: 'card' }, d.actions.length ? h('ul', { id: 'actions' }, d.actions.map((p) => h('li', {}, h('strong', {}, p.name), ': ',
      p.error ? `could not plan: ${p.error}` : (p.actions.map((a) => a.type + (a.percent !== undefined ? ` ${a.percent}%` : '') + (a.seconds !== undefined ? ` ${a.seconds}s` : '') + (a.reason ? ` (${a.reason})` : '')).join(', ') || 'nothing'))))
      : h('p', { class: 'muted' }, 'No actions.')),
    h('h2', {}, 'Replay'),
    h('div', { class: 'card' }, h('p', {}, 'Runs the logged plugin bytes over the logged policy, snapshot and trigger state, and compares every finding.'), replayButton, replayOut),
    h('details', { class: 'card' }, h('summary', {}, 'Policy text and digests'),
      h('dl', { class: 'kv' },
        h('dt', {}, 'policy'), h('dd', {}, h('code', {}, d.digests.policy)),
        h('dt', {}, 'input'), h('dd', {}, h('code', {}, d.digests.input)),
        Object.entries(d.digests.plugins).map(([n, dg]) => [h('dt', {}, n), h('dd', {}, h('code', {}, dg))])),
      h('pre', { id: 'policy-text' }, text)),
  );
  return null;
}

async function policiesView(view) {
  const list = (await api('/v1/policies')).policies;
  view.replaceChildren(h('h1', {}, 'Policies'), h('div', { class: 'card' }, h('table', {},
    h('thead', {}, h('tr', {}, ['Policy', 'Stages', 'Description'].map((t) => h('th', {}, t)))),
    h('tbody', {}, list.map((p) => h('tr', {},
      h('td', {}, h('a', { href: '#/policy/' + encodeURIComponent(p.name) }, p.name)),
      h('td', {}, (p.stages || []).map((st) => st.name || st).join(' → ')),
      h('td', {}, p.description || '')))))));
  return null;
}

function settings(w) {
  return Object.entries(w || {}).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(', ') : v}`).join(' · ');
}

async function policyView(view, name) {
  const p = await api('/v1/policies/' + encodeURIComponent(name));
  view.replaceChildren(
    h('h1', {}, p.name), h('p', {}, p.description || ''),
    h('p', { class: 'muted' }, `${p.source} · ${p.digest}`),
    ...p.stages.map((st) => h('div', { class: 'card stage' },
      h('h2', {}, st.name, st.traffic_percent !== null && st.traffic_percent !== undefined ? ` · ${st.traffic_percent}% traffic` : '',
        st.duration_seconds ? ` · ${st.duration_seconds / 60} min` : ''),
      h('p', { class: 'muted' }, st.description || '', ` pass at ${st.scoring.pass}%, warn at ${st.scoring.warn}%`),
      h('table', {}, h('thead', {}, h('tr', {}, ['Gate', 'Plugin', 'Settings (thresholds)', 'Weight', 'Key', 'No data', 'On error'].map((t) => h('th', {}, t)))),
        h('tbody', {}, st.gates.map((g) => h('tr', {},
          h('td', {}, g.name, g.dry_run ? ' (dry run)' : ''), h('td', {}, g.plugin), h('td', {}, settings(g.with)),
          h('td', { class: 'num' }, g.weight), h('td', {}, g.key ? 'yes' : ''), h('td', {}, g.on_no_data), h('td', {}, g.on_error))))))),
    h('h2', {}, 'Triggers (checked with every stage)'),
    h('div', { class: 'card' }, h('table', {}, h('thead', {}, h('tr', {}, ['Trigger', 'Plugin', 'Settings', 'Holds promotion'].map((t) => h('th', {}, t)))),
      h('tbody', {}, p.triggers.map((t) => h('tr', {}, h('td', {}, t.name, t.description ? h('div', { class: 'muted' }, t.description) : ''), h('td', {}, t.plugin), h('td', {}, settings(t.with)), h('td', {}, t.hold ? 'yes' : '')))))),
    h('h2', {}, 'Actions'),
    h('div', { class: 'card' }, h('table', {}, h('thead', {}, h('tr', {}, ['Action', 'Plugin', 'Settings'].map((t) => h('th', {}, t)))),
      h('tbody', {}, p.actions.map((a) => h('tr', {}, h('td', {}, a.name), h('td', {}, a.plugin), h('td', {}, settings(a.with))))))),
  );
  return null;
}

const DAY = 86400;
async function doraView(view, service) {
  const services = [...new Set((await allDecisions({})).map((d) => d.service))].sort();
  const picker = h('select', { id: 'dora-service', onchange: () => { location.hash = '#/dora/' + encodeURIComponent(picker.value); } },
    h('option', { value: '' }, 'choose a service'), services.map((n) => h('option', { value: n, selected: n === service }, n)));
  const body = h('div', { id: 'dora' });
  view.replaceChildren(h('h1', {}, 'DORA'), h('p', { class: 'muted' }, 'The four figures per week from the decision log, with the DORA performance band each falls in.'),
    h('div', { class: 'toolbar' }, h('label', { for: 'dora-service' }, 'Service'), picker), body);
  if (!service) return null;
  const end = Math.ceil(Date.now() / 1000 / DAY) * DAY;
  const weeks = await Promise.all([...Array(8).keys()].map((k) => api(`/v1/reports/dora?${new URLSearchParams({ service, window: '7d', until: String(end - k * 7 * DAY) })}`)));
  weeks.reverse();
  const names = weeks[0].figures.map((f) => f.name);
  body.replaceChildren(h('div', { class: 'card' }, h('table', {},
    h('thead', {}, h('tr', {}, h('th', {}, 'Week ending'), h('th', {}, 'Deployments'), names.map((n) => h('th', {}, n.replaceAll('_', ' '))))),
    h('tbody', {}, weeks.map((w) => h('tr', {}, h('td', {}, when(w.until).slice(0, 10)), h('td', { class: 'num' }, w.deployments),
      w.figures.map((f) => h('td', { class: 'num' }, f.value === null ? '–' : `${num(f.value)} ${f.unit}`, ' ', f.band ? badge(f.band === 'elite' || f.band === 'high' ? 'pass' : f.band === 'medium' ? 'warn' : 'fail') : '', f.band ? ` ${f.band}` : ''))))))),
  h('p', { class: 'muted' }, 'Bands: ', weeks[0].figures.map((f) => `${f.name.replaceAll('_', ' ')}: ${f.benchmark}`).join(' · ')));
  return null;
}

// ---- routing ----

let onDecision = null;

async function route() {
  const view = $('view');
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  onDecision = null;
  try {
    let handler = null;
    switch (parts[0]) {
      case '': handler = await releasesView(view); break;
      case 'release': handler = await releaseView(view, parts[1], parts[2]); break;
      case 'decision': handler = await decisionView(view, parts[1]); break;
      case 'policies': handler = await policiesView(view); break;
      case 'policy': handler = await policyView(view, parts[1]); break;
      case 'dora': handler = await doraView(view, parts[1]); break;
      default: view.replaceChildren(h('p', {}, 'No such page.'), h('a', { href: '#/' }, 'Releases'));
    }
    onDecision = handler;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      signOut();
      $('sign-in-error').textContent = 'The token was refused; sign in again.';
      return;
    }
    showError(view, e);
  }
}

listeners.add((decision) => {
  if (onDecision) {
    Promise.resolve(onDecision(decision)).then(() => {
      const row = document.querySelector(`tr[data-id="${CSS.escape(decision.decision_id)}"]`);
      if (row) row.classList.add('new');
    });
  }
});

function start() {
  $('sign-in').hidden = true;
  $('nav').hidden = false;
  startLive();
  route();
}

document.addEventListener('DOMContentLoaded', () => {
  $('sign-in-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    signIn($('token').value.trim());
  });
  $('sign-out').addEventListener('click', signOut);
  window.addEventListener('hashchange', () => { if (token()) route(); });
  if (token()) start();
  else $('sign-in').hidden = false;
});
