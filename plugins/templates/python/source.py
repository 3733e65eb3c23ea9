"""`{{name}}`: a tollgate source in Python. It reads an internal metrics API:
`GET /api/v1/series?query=…&start=…&end=…&step=…[&page=…]` answering
`{"series": [{"labels": {…}, "points": [[unix, value], …]}], "next_page": "…" or null}`.

The plugin never opens a socket: `start` describes the first request, the
host sends it to the URL the operator configured (with credentials the
plugin never sees), and `next` reads the answer, asking for the next page
until there is none. The pages read so far travel in the round's state."""

import json

from tollgate_sdk import Settings, answer_json, done, fetch, first_round, get, series
from wit_world import exports


def api_path(config):
    s = Settings(config)
    path = s.text("path", "/api/v1/series")
    s.finish()  # refuses unknown keys
    return path


def request(path, query, page=None):
    params = dict(query=query.text, start=query.start, end=query.end, step=query.step_seconds)
    if page is not None:
        params["page"] = page
    return get(path, **params)


class SourceApi(exports.SourceApi):
    def validate_config(self, config):
        api_path(config)

    def start(self, config, query):
        return first_round(request(api_path(config), query))

    def next(self, config, query, state, responses):
        page = answer_json(responses[0])
        found = json.loads(bytes(state)) if state else []
        found += [[s.get("labels", {}), s.get("points", [])] for s in page.get("series", [])]
        if page.get("next_page"):
            return fetch([request(api_path(config), query, page["next_page"])], json.dumps(found).encode())
        return done(series(labels, points) for labels, points in found)
