# W1: policies/ci-quality-gates.yaml, its six threshold gates.
package tollgate.w1

import data.tollgate.threshold
import rego.v1

gates := [
	{"name": "test-coverage", "metric": "test_coverage_percent", "aggregate": "last", "window": null, "op": ">=", "threshold": 80},
	{"name": "lint-errors", "metric": "lint_errors", "aggregate": "last", "window": null, "op": "==", "threshold": 0},
	{"name": "critical-vulnerabilities", "metric": "vulnerabilities_critical", "aggregate": "last", "window": null, "op": "==", "threshold": 0},
	{"name": "performance-regression", "metric": "performance_regression_percent", "aggregate": "last", "window": null, "op": "<", "threshold": 5},
	{"name": "api-response-time", "metric": "response_time_p95_ms", "aggregate": "max", "window": null, "op": "<", "threshold": 200},
	{"name": "compliance-score", "metric": "compliance_score_percent", "aggregate": "last", "window": null, "op": ">=", "threshold": 95},
]

verdicts := threshold.evaluate(gates)
