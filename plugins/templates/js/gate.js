// `{{name}}`: a tollgate gate in JavaScript, built by componentize-js.
// WIT records are objects, enums strings, s64 settings BigInts, and a
// `result` error is thrown.

function settings(config) {
  const values = new Map(config.map(([key, value]) => [key, value.val]));
  const take = (key, fallback) => {
    let v = values.has(key) ? values.get(key) : fallback;
    values.delete(key);
    if (v === undefined) throw `\`${key}\` is required`;
    return typeof v === "bigint" ? Number(v) : v;
  };
  const metric = take("metric", "test_coverage_percent");
  const min = take("min");
  if (typeof min !== "number" || !Number.isFinite(min)) throw "`min` must be a number";
  if (values.size > 0) throw `unknown setting(s): ${[...values.keys()].map((k) => `\`${k}\``).join(", ")}`;
  return { metric, min };
}

export const gateApi = {
  validateConfig(config) {
    settings(config);
  },
  evaluate(config, snapshot) {
    const { metric, min } = settings(config);
    const points = snapshot.points({ metric, selector: [], windowSeconds: undefined, track: "current" });
    if (points.length === 0) {
      return { verdict: "inconclusive", reason: `no \`${metric}\` in the snapshot`, observed: undefined, threshold: min, details: [] };
    }
    const last = points[points.length - 1].value;
    const verdict = last >= min ? "pass" : "fail";
    return { verdict, reason: `\`${metric}\` = ${last}, required >= ${min}: ${verdict}`, observed: last, threshold: min, details: [] };
  },
};
