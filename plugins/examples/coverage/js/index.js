// Coverage at least `min`, and no drop of more than `max_drop` points
// against the baseline. Built by componentize-js; WIT records are objects,
// enums strings, and `result` errors are thrown.

const METRIC = "test_coverage_percent";

function limits(config) {
  const values = new Map(config.map(([key, value]) => [key, value.val]));
  const number = (key, fallback) => {
    let v = values.has(key) ? values.get(key) : fallback;
    if (v === undefined) throw `\`${key}\` is required`;
    // WIT's s64 arrives as a BigInt; `min: 80` in YAML is an integer.
    if (typeof v === "bigint") v = Number(v);
    if (typeof v !== "number" || !Number.isFinite(v)) throw `\`${key}\` must be a number`;
    values.delete(key);
    return v;
  };
  const result = { min: number("min"), maxDrop: number("max_drop", 1) };
  if (values.size > 0) throw `unknown setting(s): ${[...values.keys()].map((k) => `\`${k}\``).join(", ")}`;
  return result;
}

function newest(snapshot, track) {
  const found = snapshot.points({ metric: METRIC, selector: [], windowSeconds: undefined, track });
  return found.length ? found[found.length - 1].value : undefined;
}

function finding(verdict, reason, observed, threshold) {
  return { verdict, reason, observed, threshold, details: [] };
}

export const gateApi = {
  validateConfig(config) {
    limits(config);
  },
  evaluate(config, snapshot) {
    const { min, maxDrop } = limits(config);
    const now = newest(snapshot, "current");
    if (now === undefined) return finding("inconclusive", "no coverage", undefined, min);
    const before = newest(snapshot, "baseline");
    if (now < min) return finding("fail", `coverage ${now} is below ${min}`, now, min);
    if (before !== undefined && before - now > maxDrop) {
      return finding("fail", `coverage fell ${before - now} points from ${before}`, now, min);
    }
    return finding("pass", `coverage ${now}`, now, min);
  },
};
