"""`{{name}}`: a tollgate gate in Python. Its settings come from the
policy's `with:`; `tollgate plugin build` makes the component."""

from tollgate_sdk import Settings, aggregate, finding, points
from wit_world import exports


def settings(config):
    s = Settings(config)
    metric = s.text("metric", "test_coverage_percent")
    minimum = s.number("min")
    s.finish()  # refuses unknown keys
    return metric, minimum


class GateApi(exports.GateApi):
    def validate_config(self, config):
        settings(config)

    def evaluate(self, config, snapshot):
        metric, minimum = settings(config)
        last = aggregate(v for _, v in points(snapshot, metric))
        if last is None:
            return finding("inconclusive", f"no `{metric}` in the snapshot", threshold=minimum)
        verdict = "pass" if last >= minimum else "fail"
        return finding(verdict, f"`{metric}` = {last:g}, required >= {minimum:g}: {verdict}", last, minimum)
