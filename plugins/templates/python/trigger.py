"""`{{name}}`: a tollgate rollback trigger in Python. It fires when the
newest value of a metric is above `max` in `breaches` checks in a row; the
count is the state the host keeps between checks."""

from tollgate_sdk import Err, Settings, last, trigger_result
from wit_world import exports


def settings(config):
    s = Settings(config)
    metric = s.text("metric", "error_rate")
    maximum = s.number("max")
    breaches = s.integer("breaches", 1)
    s.finish()  # refuses unknown keys
    if not 1 <= breaches <= 255:
        raise Err("`breaches` must be 1 to 255")
    return metric, maximum, breaches


class TriggerApi(exports.TriggerApi):
    def validate_config(self, config):
        settings(config)

    def check(self, config, snapshot, state):
        metric, maximum, breaches = settings(config)
        value = last(snapshot, metric)
        seen = state[0] if state else 0
        seen = min(seen + 1, 255) if value is not None and value > maximum else 0
        if value is None:
            return trigger_result("none", f"no `{metric}` in the snapshot", bytes([seen]), threshold=maximum)
        if seen >= breaches:
            reason = f"`{metric}` = {value:g} is above {maximum:g} ({seen} in a row)"
            return trigger_result("immediate-rollback", reason, bytes([seen]), value, maximum)
        reason = f"`{metric}` = {value:g}; {seen} of {breaches} breaches in a row"
        return trigger_result("none", reason, bytes([seen]), value, maximum)
