"""Coverage at least `min`, and no drop of more than `max_drop` points
against the baseline."""

from tollgate_sdk import Settings, finding, points
from wit_world import exports

METRIC = "test_coverage_percent"


def limits(config):
    s = Settings(config)
    minimum, max_drop = s.number("min"), s.number("max_drop", 1.0)
    s.finish()
    return minimum, max_drop


def newest(snapshot, baseline):
    found = points(snapshot, METRIC, baseline=baseline)
    return found[-1][1] if found else None


class GateApi(exports.GateApi):
    def validate_config(self, config):
        limits(config)

    def evaluate(self, config, snapshot):
        minimum, max_drop = limits(config)
        now = newest(snapshot, baseline=False)
        if now is None:
            return finding("inconclusive", "no coverage", threshold=minimum)
        before = newest(snapshot, baseline=True)
        if now < minimum:
            return finding("fail", f"coverage {now:g} is below {minimum:g}", now, minimum)
        if before is not None and before - now > max_drop:
            return finding("fail", f"coverage fell {before - now:g} points from {before:g}", now, minimum)
        return finding("pass", f"coverage {now:g}", now, minimum)
