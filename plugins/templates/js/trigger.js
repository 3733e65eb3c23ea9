// `{{name}}`: a tollgate rollback trigger in JavaScript. It fires when the
// newest value of a metric is above `max` in `breaches` checks in a row;
// the count is the state the host keeps between checks.

import { Settings, last, triggerResult } from "./tollgate_sdk.js";

function settings(config) {
  const s = new Settings(config);
  const metric = s.text("metric", "error_rate");
  const max = s.number("max");
  const breaches = s.integer("breaches", 1);
  s.finish(); // refuses unknown keys
  if (breaches < 1 || breaches > 255) throw "`breaches` must be 1 to 255";
  return { metric, max, breaches };
}

export const triggerApi = {
  validateConfig(config) {
    settings(config);
  },
  check(config, snapshot, state) {
    const { metric, max, breaches } = settings(config);
    const value = last(snapshot, metric);
    let seen = state.length ? state[0] : 0;
    seen = value !== undefined && value > max ? Math.min(seen + 1, 255) : 0;
    if (value === undefined) return triggerResult("none", `no \`${metric}\` in the snapshot`, [seen], undefined, max);
    if (seen >= breaches) {
      return triggerResult("immediate-rollback", `\`${metric}\` = ${value} is above ${max} (${seen} in a row)`, [seen], value, max);
    }
    return triggerResult("none", `\`${metric}\` = ${value}; ${seen} of ${breaches} breaches in a row`, [seen], value, max);
  },
};
