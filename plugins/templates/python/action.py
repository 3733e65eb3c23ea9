"""`{{name}}`: a tollgate deployment action in Python. It plans the next
steps from how the stage came out."""

from tollgate_sdk import Err, Settings, outcome, pause, promote, rollback
from wit_world import exports


def settings(config):
    s = Settings(config)
    seconds = s.integer("pause_seconds", 60)
    s.finish()  # refuses unknown keys
    if seconds < 0:
        raise Err("`pause_seconds` must not be negative")
    return seconds


class ActionApi(exports.ActionApi):
    def validate_config(self, config):
        settings(config)

    def plan(self, config, snapshot, context):
        seconds = settings(config)
        result = outcome(context)
        if result == "pass":
            return [promote()]
        if result == "fail":
            return [rollback(f"stage `{context.stage}` failed")]
        return [pause(seconds)]
