// `{{name}}`: a tollgate source in JavaScript. It reads an internal metrics
// API: `GET /api/v1/series?query=…&start=…&end=…&step=…[&page=…]` answering
// `{"series": [{"labels": {…}, "points": [[unix, value], …]}], "next_page": "…" or null}`.
//
// The plugin never opens a socket: `start` describes the first request,
// the host sends it to the URL the operator configured (with credentials
// the plugin never sees), and `next` reads the answer, asking for the next
// page until there is none. The pages read so far travel in the state.

import { Settings, answerJson, done, fetchMore, firstRound, get, series } from "./tollgate_sdk.js";

function apiPath(config) {
  const s = new Settings(config);
  const path = s.text("path", "/api/v1/series");
  s.finish(); // refuses unknown keys
  return path;
}

function request(path, query, page) {
  const params = { query: query.text, start: query.start, end: query.end, step: query.stepSeconds };
  if (page !== undefined) params.page = page;
  return get(path, params);
}

export const sourceApi = {
  validateConfig(config) {
    apiPath(config);
  },
  start(config, query) {
    return firstRound([request(apiPath(config), query)]);
  },
  next(config, query, state, responses) {
    const page = answerJson(responses[0]);
    const found = state.length ? JSON.parse(new TextDecoder().decode(state)) : [];
    for (const s of page.series || []) found.push([s.labels || {}, s.points || []]);
    if (page.next_page) {
      const carried = new TextEncoder().encode(JSON.stringify(found));
      return fetchMore([request(apiPath(config), query, page.next_page)], carried);
    }
    return done(found.map(([labels, points]) => series(labels, points)));
  },
};
