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

    def _get(self, key):
        self._read.add(key)
        return self._values.get(key)

    def number(self, key, default=None):
        value = self._get(key)
        if value is None:
            if default is None:
                raise Err(f"`{key}` is required")
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
                raise Err(f"`{key}` is required")
            return int(default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise Err(f"`{key}` must be a whole number, not {type(value).__name__}")
        return value

    def text(self, key, default=None):
        value = self._get(key)
        if value is None:
            if default is None:
                raise Err(f"`{key}` is required")
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
            raise Err("unknown setting(s): " + ", ".join(f"`{k}`" for k in unknown))


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
