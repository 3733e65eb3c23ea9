// `{{name}}`: a tollgate gate in JavaScript, built by componentize-js.
// Its settings come from the policy's `with:`.

import { Settings, finding, last } from "./tollgate_sdk.js";

function settings(config) {
  const s = new Settings(config);
  const metric = s.text("metric", "test_coverage_percent");
  const min = s.number("min");
  s.finish(); // refuses unknown keys
  return { metric, min };
}

export const gateApi = {
  validateConfig(config) {
    settings(config);
  },
  evaluate(config, snapshot) {
    const { metric, min } = settings(config);
    const value = last(snapshot, metric);
    if (value === undefined) return finding("inconclusive", `no \`${metric}\` in the snapshot`, undefined, min);
    const verdict = value >= min ? "pass" : "fail";
    return finding(verdict, `\`${metric}\` = ${value}, required >= ${min}: ${verdict}`, value, min);
  },
};
