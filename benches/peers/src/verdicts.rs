//! What every contender answers, in one shape, so their answers can be
//! compared before anything is timed.

use std::fmt;

/// One gate's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    pub name: String,
    /// `pass`, `fail` or `inconclusive`.
    pub verdict: String,
    pub observed: Option<f64>,
}

/// A stage's answer: the decision and each gate's.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdicts {
    /// `promote`, `hold` or `rollback`.
    pub decision: String,
    pub gates: Vec<Gate>,
}

impl fmt::Display for Verdicts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [", self.decision)?;
        for (i, g) in self.gates.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match g.observed {
                Some(v) => write!(f, "{} {} ({v})", g.name, g.verdict)?,
                None => write!(f, "{} {}", g.name, g.verdict)?,
            }
        }
        f.write_str("]")
    }
}

/// Observed values may differ in the last bits: tollgate and the native code
/// average with a running mean, Rego with `sum / count`.
fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

impl Verdicts {
    /// Why `other` is not the same answer, if it is not: the decision and
    /// every gate's name and verdict must be equal, observed values equal
    /// to within rounding.
    pub fn differs(&self, other: &Verdicts) -> Option<String> {
        if self.decision != other.decision {
            return Some(format!(
                "decision `{}` against `{}`",
                self.decision, other.decision
            ));
        }
        if self.gates.len() != other.gates.len() {
            return Some(format!(
                "{} gates against {}",
                self.gates.len(),
                other.gates.len()
            ));
        }
        for (a, b) in self.gates.iter().zip(&other.gates) {
            if a.name != b.name || a.verdict != b.verdict {
                return Some(format!(
                    "gate `{}` {} against gate `{}` {}",
                    a.name, a.verdict, b.name, b.verdict
                ));
            }
            let same_value = match (a.observed, b.observed) {
                (Some(x), Some(y)) => close(x, y),
                (None, None) => true,
                _ => false,
            };
            if !same_value {
                return Some(format!(
                    "gate `{}` observed {:?} against {:?}",
                    a.name, a.observed, b.observed
                ));
            }
        }
        None
    }
}
