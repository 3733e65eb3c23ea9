# W2: the gates of stage `initial-canary` of policies/canary.yaml (windows in
# seconds: 15m = 900).
package tollgate.w2

import data.tollgate.threshold
import rego.v1

gates := [
	{"name": "error-rate", "metric": "error_rate", "aggregate": "avg", "window": 900, "op": "<", "threshold": 0.001},
	{"name": "response-time-p95", "metric": "response_time_p95_ms", "aggregate": "max", "window": 900, "op": "<", "threshold": 500},
]

verdicts := threshold.evaluate(gates)
