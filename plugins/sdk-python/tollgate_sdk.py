"""Helpers for tollgate plugins written in Python, over componentize-py's
bindings of the `tollgate:plugin` WIT package.

Copied next to a project's `app.py` by `tollgate plugin new --lang python`;
it needs nothing but the generated `wit_world` bindings. The same helpers as
the Rust SDK: typed settings whose errors name the key, windowed points,
aggregates, and findings.
"""

import math

from componentize_py_types import Err


class Settings:
    """A plugin's `with:` settings. Every read records the key, and
    `finish()` refuses keys nothing read, so a typo in a policy is an error
    at load, not a silent default."""

    def __init__(self, config):
        self._values = {key: value.value for key, value in config}
        self._read = set()
        self._asked = []

    def _get(self, key):
        self._read.add(key)
        if key not in self._asked:
            self._asked.append(key)
        return self._values.get(key)

    def _required(self, key):
        """The error for a missing `key`, naming a given key that reads
        like a misspelling of it (`mn` for `min`)."""
        unread = [k for k in self._values if k not in self._read]
        typos = "".join(
            f"; `{k}` is not a setting: did you mean `{key}`?"
            for k in unread
            if _closest(k, [key]) == key
        )
        return Err(f"`{key}` is required{typos}")

    def number(self, key, default=None):
        value = self._get(key)
        if value is None:
            if default is None:
                raise self._required(key)
            return float(default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Err(f"`{key}` must be a number, not {type(value).__name__}")
        if not math.isfinite(value):
            raise Err(f"`{key}` must be a finite number")
        return float(value)

    def integer(self, key, default=None):
        value = self._get(key)
        if value is None:
            if default is None:
                raise self._required(key)
            return int(default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise Err(f"`{key}` must be a whole number, not {type(value).__name__}")
        return value

    def text(self, key, default=None):
        value = self._get(key)
        if value is None:
            if default is None:
                raise self._required(key)
            return default
        if not isinstance(value, str):
            raise Err(f"`{key}` must be text, not {type(value).__name__}")
        return value

    def flag(self, key, default=False):
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise Err(f"`{key}` must be true or false")
        return value

    def finish(self):
        unknown = sorted(set(self._values) - self._read)
        if unknown:

            def named(key):
                meant = _closest(key, self._asked)
                return f"`{key}` (did you mean `{meant}`?)" if meant else f"`{key}`"

            settings = ", ".join(self._asked) or "none"
            raise Err(
                "unknown setting(s): "
                + ", ".join(named(k) for k in unknown)
                + f"; settings: {settings}"
            )


def _distance(a, b):
    """Edit distance, counting a swap of neighbours as one edit."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def _closest(typed, known):
    """The known setting a mistyped key most likely meant, as the host
    judges typos: within one edit per three characters (at least one)."""
    best = None
    for k in known:
        if k == typed:
            continue
        d = _distance(typed, k)
        if d <= max(len(k) // 3, 1) and (best is None or d < best[0]):
            best = (d, k)
    return best[1] if best else None


def points(snapshot, metric, window_seconds=None, selector=(), baseline=False):
    """The (timestamp, value) points of `metric` in the window ending at the
    snapshot's `taken_at`, oldest first; the host applies the window."""
    from wit_world.imports import snapshot as snap

    query = snap.Query(
        metric=metric,
        selector=list(selector),
        window_seconds=window_seconds,
        track=snap.Track.BASELINE if baseline else snap.Track.CURRENT,
    )
    return [(p.timestamp, p.value) for p in snapshot.points(query)]


def aggregate(values, how="last"):
    """avg, min, max, last, sum, count or pNN (linear interpolation, as
    numpy's default); None for no values."""
    values = list(values)
    if not values:
        return None
    if how == "last":
        return values[-1]
    if how == "avg":
        return sum(values) / len(values)
    if how == "min":
        return min(values)
    if how == "max":
        return max(values)
    if how == "sum":
        return sum(values)
    if how == "count":
        return float(len(values))
    if how.startswith("p") and how[1:].replace(".", "", 1).isdigit():
        ordered = sorted(values)
        rank = float(how[1:]) / 100 * (len(ordered) - 1)
        low = math.floor(rank)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
    raise Err(f"unknown aggregate `{how}`")


def finding(verdict, reason, observed=None, threshold=None, **details):
    """A finding: verdict is "pass", "warn", "fail" or "inconclusive"."""
    from wit_world.imports import types

    verdicts = {
        "pass": types.Verdict.PASS,
        "warn": types.Verdict.WARN,
        "fail": types.Verdict.FAIL,
        "inconclusive": types.Verdict.INCONCLUSIVE,
    }
    return types.Finding(
        verdict=verdicts[verdict],
        reason=reason,
        observed=None if observed is None else float(observed),
        threshold=None if threshold is None else float(threshold),
        details=[types.Detail(key=str(k), value=str(v)) for k, v in details.items()],
    )


def last(snapshot, metric, baseline=False):
    """The newest value of `metric`, or None."""
    found = points(snapshot, metric, baseline=baseline)
    return found[-1][1] if found else None


def trigger_result(fire, reason, state=b"", observed=None, threshold=None, **details):
    """A trigger's answer: fire is "none", "alert", "prepare-rollback" or
    "immediate-rollback"; `state` (bytes) is handed to the next check."""
    from wit_world.exports import trigger_api
    from wit_world.imports import types

    fires = {
        "none": trigger_api.Fire.NONE,
        "alert": trigger_api.Fire.ALERT,
        "prepare-rollback": trigger_api.Fire.PREPARE_ROLLBACK,
        "immediate-rollback": trigger_api.Fire.IMMEDIATE_ROLLBACK,
    }
    return trigger_api.TriggerResult(
        fire=fires[fire],
        reason=reason,
        observed=None if observed is None else float(observed),
        threshold=None if threshold is None else float(threshold),
        details=[types.Detail(key=str(k), value=str(v)) for k, v in details.items()],
        state=bytes(state),
    )


def outcome(context):
    """The stage's outcome as text: "pass", "warning", "fail" or "inconclusive"."""
    return context.outcome.name.lower()


def _action(case, *value):
    """One case of the WIT `action` variant, by its binding's class name."""
    from wit_world.exports import action_api

    return getattr(action_api, case)(*value)


def promote():
    return _action("Action_Promote")


def set_weight(percent):
    return _action("Action_SetWeight", int(percent))


def pause(seconds):
    return _action("Action_Pause", int(seconds))


def hold(reason):
    return _action("Action_Hold", reason)


def rollback(reason):
    return _action("Action_Rollback", reason)


# Sources: the plugin describes requests, the host sends them to the
# operator's base URL with credentials the plugin never sees, and the plugin
# reads the answers into series.


def _quote(text):
    """Percent-encodes all but the unreserved characters (componentize-py's
    standard library has no `urllib`)."""
    keep = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
    return "".join(chr(b) if b in keep else f"%{b:02X}" for b in str(text).encode())


def get(path, **params):
    """A GET of `path` with `params` as its query string."""
    from wit_world.exports import source_api

    query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in params.items())
    return source_api.Request(
        method=source_api.Method.GET,
        path=f"{path}?{query}" if query else path,
        headers=[],
        body=b"",
    )


def post_json(path, body):
    """A POST of `body` as JSON to `path`."""
    import json

    from wit_world.exports import source_api

    return source_api.Request(
        method=source_api.Method.POST,
        path=path,
        headers=[("Content-Type", "application/json")],
        body=json.dumps(body).encode(),
    )


def answer_json(response):
    """A response's body as JSON; an Err naming the status and quoting the
    start of the body when it is not a 2xx with JSON."""
    import json

    text = bytes(response.body).decode("utf-8", "replace")
    quoted = " ".join(text.split())[:300] or "(empty body)"
    if not 200 <= response.status < 300:
        raise Err(f"HTTP {response.status}: {quoted}")
    try:
        return json.loads(text)
    except ValueError as e:
        raise Err(f"HTTP {response.status} with an answer that is not JSON ({e}): {quoted}")


def series(labels, points):
    """A series from a label mapping and (timestamp, value) pairs, keeping
    only finite values."""
    from wit_world.exports import source_api

    return source_api.Series(
        labels=[(str(k), str(v)) for k, v in dict(labels).items()],
        points=[
            source_api.Sample(timestamp=int(t), value=float(v))
            for t, v in points
            if v is not None and math.isfinite(float(v))
        ],
    )


def fetch(requests, state=b""):
    """The step that asks for another round of requests."""
    from wit_world.exports import source_api

    return source_api.Step_Fetch(source_api.Round(requests=list(requests), state=bytes(state)))


def done(found):
    """The step that answers the query with `found` series."""
    from wit_world.exports import source_api

    return source_api.Step_Done(list(found))


def first_round(*requests, state=b""):
    """The round `start` returns."""
    from wit_world.exports import source_api

    return source_api.Round(requests=list(requests), state=bytes(state))
