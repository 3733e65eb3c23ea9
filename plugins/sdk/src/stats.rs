//! Aggregation of a window of points and comparison against a threshold.

use std::fmt;
use std::str::FromStr;

/// How a window of values becomes one observed number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Aggregate {
    /// Arithmetic mean.
    Avg,
    /// Largest value.
    Max,
    /// Smallest value.
    Min,
    /// The newest value (the latest timestamp; ties keep the later entry).
    Last,
    /// Sum of the values.
    Sum,
    /// Number of values.
    Count,
    /// The given percentile (0 to 100), linearly interpolated between the two
    /// nearest ranks, as numpy's default `linear` method does.
    Percentile(f64),
}

impl FromStr for Aggregate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "avg" | "mean" => Self::Avg,
            "max" => Self::Max,
            "min" => Self::Min,
            "last" => Self::Last,
            "sum" => Self::Sum,
            "count" => Self::Count,
            other => {
                let pct = other
                    .strip_prefix('p')
                    .and_then(|n| n.parse::<f64>().ok())
                    .filter(|p| (0.0..=100.0).contains(p))
                    .ok_or_else(|| {
                        format!(
                            "unknown aggregate `{other}`: expected avg, max, min, last, sum, count or pNN such as p95"
                        )
                    })?;
                Self::Percentile(pct)
            }
        })
    }
}

impl fmt::Display for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Avg => f.write_str("avg"),
            Self::Max => f.write_str("max"),
            Self::Min => f.write_str("min"),
            Self::Last => f.write_str("last"),
            Self::Sum => f.write_str("sum"),
            Self::Count => f.write_str("count"),
            Self::Percentile(p) => write!(f, "p{p}"),
        }
    }
}

impl Aggregate {
    /// Reduces `(timestamp, value)` points to one number; `None` when empty.
    pub fn apply(self, points: &[(i64, f64)]) -> Option<f64> {
        if points.is_empty() {
            return None;
        }
        let values = points.iter().map(|p| p.1);
        Some(match self {
            // A running mean: exact when every value is the same, so a steady
            // 0.0001 averages to 0.0001, not 0.00010000000000000002.
            Self::Avg => values
                .enumerate()
                .fold(0.0, |mean, (i, v)| mean + (v - mean) / (i + 1) as f64),
            Self::Max => values.fold(f64::NEG_INFINITY, f64::max),
            Self::Min => values.fold(f64::INFINITY, f64::min),
            Self::Last => {
                let mut newest = points[0];
                for p in points {
                    if p.0 >= newest.0 {
                        newest = *p;
                    }
                }
                newest.1
            }
            Self::Sum => values.sum(),
            Self::Count => points.len() as f64,
            Self::Percentile(p) => {
                let mut sorted: Vec<f64> = values.collect();
                sorted.sort_by(f64::total_cmp);
                percentile(&sorted, p)
            }
        })
    }
}

/// The `p`th percentile (0 to 100) of sorted, non-empty values, interpolated
/// linearly between the nearest ranks.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = (p / 100.0) * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    let frac = rank - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// Formats a number for a reason string: at most six significant digits,
/// without trailing zeros, so `0.0002666…` reads `0.000267`.
pub fn short(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return v.to_string();
    }
    let magnitude = v.abs().log10().floor() as i32;
    if !(-6..15).contains(&magnitude) {
        return format!("{v:.5e}");
    }
    let decimals = (5 - magnitude).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A comparison that the observed value must satisfy to pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

impl FromStr for Op {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "<" => Self::Lt,
            "<=" => Self::Le,
            ">" => Self::Gt,
            ">=" => Self::Ge,
            "==" => Self::Eq,
            other => {
                return Err(format!(
                    "unknown comparison `{other}`: expected <, <=, >, >= or =="
                ));
            }
        })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Eq => "==",
        })
    }
}

impl Op {
    /// Whether `observed op threshold` holds.
    pub fn holds(self, observed: f64, threshold: f64) -> bool {
        match self {
            Self::Lt => observed < threshold,
            Self::Le => observed <= threshold,
            Self::Gt => observed > threshold,
            Self::Ge => observed >= threshold,
            Self::Eq => observed == threshold,
        }
    }

    /// Whether a larger observed value is the better one for this comparison.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Self::Gt | Self::Ge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(values: &[f64]) -> Vec<(i64, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64, *v))
            .collect()
    }

    #[test]
    fn aggregates_match_hand_computed_values() {
        let p = pts(&[3.0, 1.0, 4.0, 1.0, 5.0]);
        assert_eq!(Aggregate::Avg.apply(&p), Some(2.8));
        assert_eq!(Aggregate::Max.apply(&p), Some(5.0));
        assert_eq!(Aggregate::Min.apply(&p), Some(1.0));
        assert_eq!(Aggregate::Last.apply(&p), Some(5.0));
        assert_eq!(Aggregate::Sum.apply(&p), Some(14.0));
        assert_eq!(Aggregate::Count.apply(&p), Some(5.0));
        assert_eq!(Aggregate::Avg.apply(&[]), None);
    }

    #[test]
    fn mean_of_identical_values_is_exact() {
        for v in [0.0001, 0.0005, 0.001, 0.1, 79.9] {
            let p: Vec<(i64, f64)> = (0..30).map(|i| (i, v)).collect();
            assert_eq!(Aggregate::Avg.apply(&p), Some(v));
        }
    }

    #[test]
    fn last_takes_the_newest_timestamp_not_the_last_entry() {
        assert_eq!(Aggregate::Last.apply(&[(20, 1.0), (10, 2.0)]), Some(1.0));
    }

    #[test]
    fn percentile_interpolates_like_numpy_linear() {
        // numpy.percentile([1, 2, 3, 4], 95) == 3.85
        let p = Aggregate::Percentile(95.0).apply(&pts(&[4.0, 1.0, 3.0, 2.0]));
        assert!((p.unwrap_or(f64::NAN) - 3.85).abs() < 1e-12);
        assert_eq!(Aggregate::Percentile(50.0).apply(&pts(&[7.0])), Some(7.0));
        assert_eq!(
            Aggregate::Percentile(0.0).apply(&pts(&[2.0, 9.0])),
            Some(2.0)
        );
        assert_eq!(
            Aggregate::Percentile(100.0).apply(&pts(&[2.0, 9.0])),
            Some(9.0)
        );
    }

    #[test]
    fn parses_aggregates_and_rejects_nonsense() {
        assert_eq!(
            "p99.9".parse::<Aggregate>(),
            Ok(Aggregate::Percentile(99.9))
        );
        assert!("p101".parse::<Aggregate>().is_err());
        assert!("median".parse::<Aggregate>().is_err());
    }

    #[test]
    fn short_numbers_keep_six_significant_digits() {
        assert_eq!(short(0.0002666666666666667), "0.000266667");
        assert_eq!(short(80.0), "80");
        assert_eq!(short(79.9), "79.9");
        assert_eq!(short(1234567.0), "1234567");
        assert_eq!(short(-0.5), "-0.5");
        assert_eq!(short(0.0), "0");
    }

    #[test]
    fn comparisons_are_exact_at_the_boundary() {
        assert!(Op::Ge.holds(80.0, 80.0));
        assert!(!Op::Ge.holds(79.9, 80.0));
        assert!(!Op::Lt.holds(0.001, 0.001));
        assert!(Op::Le.holds(0.001, 0.001));
        assert!(Op::Eq.holds(0.0, 0.0));
        assert!("=".parse::<Op>().is_err());
    }
}

/// The result of a two-sided Mann-Whitney U test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U for the first sample, as scipy's `mannwhitneyu` reports it.
    pub u: f64,
    /// Two-sided p-value from the normal approximation with tie and
    /// continuity corrections (scipy's `method="asymptotic"`).
    pub p_value: f64,
}

/// Two-sided Mann-Whitney U test of `x` against `y`; `None` when either is empty.
pub fn mann_whitney_u(x: &[f64], y: &[f64]) -> Option<MannWhitney> {
    let (n1, n2) = (x.len(), y.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let mut all: Vec<(f64, bool)> = x
        .iter()
        .map(|v| (*v, true))
        .chain(y.iter().map(|v| (*v, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = all.len();
    let mut rank_sum_x = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their average.
        let avg_rank = (i + j + 2) as f64 / 2.0;
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        rank_sum_x += avg_rank * all[i..=j].iter().filter(|(_, in_x)| *in_x).count() as f64;
        i = j + 1;
    }
    let (n1f, n2f, nf) = (n1 as f64, n2 as f64, n as f64);
    let u1 = rank_sum_x - n1f * (n1f + 1.0) / 2.0;
    let u2 = n1f * n2f - u1;
    let mu = n1f * n2f / 2.0;
    let sigma = (n1f * n2f / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)))).sqrt();
    let p_value = if sigma > 0.0 && sigma.is_finite() {
        let z = (u1.max(u2) - mu - 0.5) / sigma;
        // Two-sided: twice the upper tail of the standard normal.
        (libm::erfc(z / std::f64::consts::SQRT_2)).min(1.0)
    } else {
        1.0
    };
    Some(MannWhitney { u: u1, p_value })
}
