// Helpers for tollgate plugins written in JavaScript, over
// componentize-js's bindings of the `tollgate:plugin` WIT package.
//
// Copied next to a project's `index.js` by `tollgate plugin new --lang js`
// and imported by relative path; componentize-js bundles it. The same
// helpers as the Rust and Python SDKs: typed settings whose errors name the
// key, windowed points, aggregates, findings and trigger results. WIT
// records are objects, enums strings, s64 values BigInts, `list<u8>` a
// Uint8Array, and a `result` error is a thrown string.

/** A plugin's `with:` settings. Every read records the key, and `finish()`
 * refuses keys nothing read, so a typo in a policy is an error at load. */
export class Settings {
  constructor(config) {
    this.values = new Map(config.map(([key, value]) => [key, value.val]));
    this.read = new Set();
    this.asked = [];
  }

  get(key) {
    this.read.add(key);
    if (!this.asked.includes(key)) this.asked.push(key);
    return this.values.get(key);
  }

  /** The error for a missing `key`, naming a given key that reads like a
   * misspelling of it (`mn` for `min`). */
  required(key) {
    const typos = [...this.values.keys()]
      .filter((k) => !this.read.has(k) && closest(k, [key]) === key)
      .map((k) => `; \`${k}\` is not a setting: did you mean \`${key}\`?`)
      .join("");
    return `\`${key}\` is required${typos}`;
  }

  number(key, fallback) {
    let v = this.get(key);
    if (v === undefined) {
      if (fallback === undefined) throw this.required(key);
      return fallback;
    }
    if (typeof v === "bigint") v = Number(v);
    if (typeof v !== "number") throw `\`${key}\` must be a number, not ${typeof v}`;
    if (!Number.isFinite(v)) throw `\`${key}\` must be a finite number`;
    return v;
  }

  integer(key, fallback) {
    const v = this.get(key);
    if (v === undefined) {
      if (fallback === undefined) throw this.required(key);
      return fallback;
    }
    if (typeof v !== "bigint") throw `\`${key}\` must be a whole number, not ${typeof v}`;
    return Number(v);
  }

  text(key, fallback) {
    const v = this.get(key);
    if (v === undefined) {
      if (fallback === undefined) throw this.required(key);
      return fallback;
    }
    if (typeof v !== "string") throw `\`${key}\` must be text, not ${typeof v}`;
    return v;
  }

  flag(key, fallback = false) {
    const v = this.get(key);
    if (v === undefined) return fallback;
    if (typeof v !== "boolean") throw `\`${key}\` must be true or false`;
    return v;
  }

  finish() {
    const unknown = [...this.values.keys()].filter((k) => !this.read.has(k)).sort();
    if (unknown.length > 0) {
      const named = (k) => {
        const meant = closest(k, this.asked);
        return meant ? `\`${k}\` (did you mean \`${meant}\`?)` : `\`${k}\``;
      };
      throw `unknown setting(s): ${unknown.map(named).join(", ")}; settings: ${this.asked.join(", ") || "none"}`;
    }
  }
}

/** Edit distance, counting a swap of neighbours as one edit. */
function distance(a, b) {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 0; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/** The known setting a mistyped key most likely meant, as the host judges
 * typos: within one edit per three characters (at least one). */
function closest(typed, known) {
  let best;
  for (const k of known) {
    if (k === typed) continue;
    const d = distance(typed, k);
    if (d <= Math.max(Math.floor(k.length / 3), 1) && (best === undefined || d < best[0])) best = [d, k];
  }
  return best === undefined ? undefined : best[1];
}

/** The [timestamp, value] points of `metric` in the window ending at the
 * snapshot's `taken_at`, oldest first; the host applies the window. */
export function points(snapshot, metric, { windowSeconds, selector = [], baseline = false } = {}) {
  const query = {
    metric,
    selector,
    windowSeconds: windowSeconds === undefined ? undefined : BigInt(windowSeconds),
    track: baseline ? "baseline" : "current",
  };
  return snapshot.points(query).map((p) => [Number(p.timestamp), p.value]);
}

/** The newest value of `metric`, or undefined. */
export function last(snapshot, metric, options = {}) {
  const found = points(snapshot, metric, options);
  return found.length ? found[found.length - 1][1] : undefined;
}

/** avg, min, max, last, sum, count or pNN (linear interpolation, as the
 * Rust SDK); undefined for no values. */
export function aggregate(values, how = "last") {
  const v = [...values];
  if (v.length === 0) return undefined;
  switch (how) {
    case "last":
      return v[v.length - 1];
    case "avg":
      return v.reduce((a, b) => a + b, 0) / v.length;
    case "min":
      return Math.min(...v);
    case "max":
      return Math.max(...v);
    case "sum":
      return v.reduce((a, b) => a + b, 0);
    case "count":
      return v.length;
  }
  const p = /^p(\d+(\.\d+)?)$/.exec(how);
  if (!p) throw `unknown aggregate \`${how}\``;
  const sorted = v.sort((a, b) => a - b);
  const rank = (Number(p[1]) / 100) * (sorted.length - 1);
  const low = Math.floor(rank);
  const high = Math.min(low + 1, sorted.length - 1);
  return sorted[low] + (sorted[high] - sorted[low]) * (rank - low);
}

function detailList(details) {
  return Object.entries(details).map(([key, value]) => ({ key, value: String(value) }));
}

/** A finding: verdict is "pass", "warn", "fail" or "inconclusive". */
export function finding(verdict, reason, observed, threshold, details = {}) {
  return { verdict, reason, observed, threshold, details: detailList(details) };
}

/** A trigger's answer: fire is "none", "alert", "prepare-rollback" or
 * "immediate-rollback"; `state` (bytes) is handed to the next check. */
export function triggerResult(fire, reason, state = [], observed, threshold, details = {}) {
  return { fire, reason, observed, threshold, details: detailList(details), state: Uint8Array.from(state) };
}

/** Actions, as an action's `plan` returns them. */
export const action = {
  promote: () => ({ tag: "promote" }),
  setWeight: (percent) => ({ tag: "set-weight", val: percent }),
  pause: (seconds) => ({ tag: "pause", val: BigInt(seconds) }),
  hold: (reason) => ({ tag: "hold", val: reason }),
  rollback: (reason) => ({ tag: "rollback", val: reason }),
};

// Sources: the plugin describes requests, the host sends them to the
// operator's base URL with credentials the plugin never sees, and the
// plugin reads the answers into series.

/** A GET of `path` with `params` (an object) as its query string. */
export function get(path, params = {}) {
  const query = Object.entries(params)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
    .join("&");
  return { method: "get", path: query ? `${path}?${query}` : path, headers: [], body: new Uint8Array() };
}

/** A POST of `body` as JSON to `path`. */
export function postJson(path, body) {
  return {
    method: "post",
    path,
    headers: [["Content-Type", "application/json"]],
    body: new TextEncoder().encode(JSON.stringify(body)),
  };
}

/** A response's body as JSON; throws an error naming the status and
 * quoting the start of the body when it is not a 2xx with JSON. */
export function answerJson(response) {
  const text = new TextDecoder().decode(response.body);
  const quoted = text.split(/\s+/).join(" ").trim().slice(0, 300) || "(empty body)";
  if (response.status < 200 || response.status >= 300) throw `HTTP ${response.status}: ${quoted}`;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw `HTTP ${response.status} with an answer that is not JSON (${e}): ${quoted}`;
  }
}

/** A series from a label object and [timestamp, value] pairs, keeping only
 * finite values. */
export function series(labels, points) {
  return {
    labels: Object.entries(labels || {}).map(([k, v]) => [String(k), String(v)]),
    points: (points || [])
      .map(([t, v]) => [Number(t), Number(v)])
      .filter(([t, v]) => Number.isFinite(t) && Number.isFinite(v))
      .map(([t, v]) => ({ timestamp: BigInt(Math.round(t)), value: v })),
  };
}

/** The round `start` returns. */
export function firstRound(requests, state = new Uint8Array()) {
  return { requests, state };
}

/** The step that asks for another round of requests. */
export function fetchMore(requests, state = new Uint8Array()) {
  return { tag: "fetch", val: { requests, state } };
}

/** The step that answers the query with `found` series. */
export function done(found) {
  return { tag: "done", val: found };
}
