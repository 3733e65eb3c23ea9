// `{{name}}`: a tollgate deployment action in JavaScript. It plans the next
// steps from how the stage came out.

import { Settings, action } from "./tollgate_sdk.js";

function settings(config) {
  const s = new Settings(config);
  const seconds = s.integer("pause_seconds", 60);
  s.finish(); // refuses unknown keys
  if (seconds < 0) throw "`pause_seconds` must not be negative";
  return seconds;
}

export const actionApi = {
  validateConfig(config) {
    settings(config);
  },
  plan(config, snapshot, context) {
    const seconds = settings(config);
    if (context.outcome === "pass") return [action.promote()];
    if (context.outcome === "fail") return [action.rollback(`stage \`${context.stage}\` failed`)];
    return [action.pause(seconds)];
  },
};
