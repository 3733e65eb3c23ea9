# The `threshold` plugin (plugins/threshold) and the stage rule of
# host/src/evaluate.rs, in Rego, for the gates w1.rego and w2.rego declare.
#
# The input is snapshot JSON v1 as-is. A gate pools the points of every
# `metrics` series named `metric` (none of these gates has a selector); a
# series with `value` instead of `points` is one point at `taken_at`. A
# `window` of w seconds keeps points in (taken_at - w, taken_at]. `last` is
# the value at the newest timestamp (ties keep the later entry), `max` the
# largest value, `avg` the mean. No points: inconclusive.
#
# The decision: a failed key gate rolls back; otherwise an inconclusive gate
# holds; otherwise (every gate here is a key gate of weight 1, so the score is
# 100%) promote.
package tollgate.threshold

import rego.v1

# Every gate's result and the stage's decision.
evaluate(gates) := {"decision": decision(results), "gates": results} if {
	results := [judge(g, selected(g)) | some g in gates]
}

judge(g, pts) := {"name": g.name, "verdict": verdict(g, observed), "observed": observed} if {
	count(pts) > 0
	observed := aggregate(g.aggregate, pts)
} else := {"name": g.name, "verdict": "inconclusive", "observed": null}

# The points of every series named `metric`, in document order.
points(metric) := [p |
	some s in input.metrics
	s.name == metric
	some p in series_points(s)
]

series_points(s) := s.points

series_points(s) := [[input.taken_at, s.value]] if not s.points

selected(g) := points(g.metric) if g.window == null

selected(g) := [p |
	some p in points(g.metric)
	p[0] > input.taken_at - g.window
	p[0] <= input.taken_at
] if g.window != null

aggregate("last", pts) := vals[count(vals) - 1] if {
	newest := max([p[0] | some p in pts])
	vals := [p[1] | some p in pts; p[0] == newest]
}

aggregate("max", pts) := max([p[1] | some p in pts])

aggregate("avg", pts) := sum([p[1] | some p in pts]) / count(pts)

holds("<", observed, threshold) if observed < threshold

holds("<=", observed, threshold) if observed <= threshold

holds(">", observed, threshold) if observed > threshold

holds(">=", observed, threshold) if observed >= threshold

holds("==", observed, threshold) if observed == threshold

verdict(g, observed) := "pass" if {
	holds(g.op, observed, g.threshold)
} else := "fail"

# Every gate of both policies is a key gate. Three rules rather than an
# `else` chain: in regorus 0.14.1 the RVM returns undefined for a function
# with an `else` when a body that iterates (`some r in results`) fails,
# instead of going on to the next `else` (the interpreter gets it right).
decision(results) := "rollback" if key_failed(results)

decision(results) := "hold" if {
	not key_failed(results)
	some r in results
	r.verdict == "inconclusive"
}

decision(results) := "promote" if {
	not key_failed(results)
	every r in results {
		r.verdict == "pass"
	}
}

key_failed(results) if {
	some r in results
	r.verdict == "fail"
}
