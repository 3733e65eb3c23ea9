//! radon's JSON reports: cyclomatic complexity (`cc -j`) and the
//! maintainability index (`mi -j`).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ReportError, Values, err, json};

/// One entry of radon's per-file output: its blocks, or the error radon
/// met reading the file.
#[derive(Deserialize)]
#[serde(untagged)]
enum RadonFile<T> {
    Error { error: String },
    Ok(T),
}

/// A block of `radon cc -j`: a function, a method or a class, with the
/// methods and closures inside it.
#[derive(Deserialize)]
struct RadonBlock {
    complexity: f64,
    #[serde(default)]
    methods: Vec<RadonBlock>,
    #[serde(default)]
    closures: Vec<RadonBlock>,
    #[serde(default, rename = "type")]
    kind: String,
}

impl RadonBlock {
    /// The highest complexity of a function or method in this block. A
    /// class's own figure is the average of its methods', so it is skipped.
    fn max(&self) -> Option<f64> {
        let own = (self.kind != "class").then_some(self.complexity);
        self.methods
            .iter()
            .chain(&self.closures)
            .filter_map(RadonBlock::max)
            .chain(own)
            .reduce(f64::max)
    }
}

/// `radon cc -j`: the most complex function anywhere.
pub(super) fn radon_cc(bytes: &[u8]) -> Result<Values, ReportError> {
    let files: BTreeMap<String, RadonFile<Vec<RadonBlock>>> = json(bytes, "radon cc")?;
    let mut max = None::<f64>;
    for (file, entry) in &files {
        match entry {
            RadonFile::Error { error } => {
                return Err(err(format!("radon cc: `{file}`: {error}")));
            }
            RadonFile::Ok(blocks) => {
                if let Some(m) = blocks.iter().filter_map(RadonBlock::max).reduce(f64::max) {
                    max = Some(max.map_or(m, |x| x.max(m)));
                }
            }
        }
    }
    let mut out = Values::new();
    // A report with no function in it has no complexity to judge.
    if let Some(max) = max {
        out.insert("cyclomatic_complexity_max", max);
    }
    Ok(out)
}

#[derive(Deserialize)]
struct RadonMi {
    mi: f64,
}

/// `radon mi -j`: the least maintainable file's index (0–100).
pub(super) fn radon_mi(bytes: &[u8]) -> Result<Values, ReportError> {
    let files: BTreeMap<String, RadonFile<RadonMi>> = json(bytes, "radon mi")?;
    let mut min = None::<f64>;
    for (file, entry) in &files {
        match entry {
            RadonFile::Error { error } => {
                return Err(err(format!("radon mi: `{file}`: {error}")));
            }
            RadonFile::Ok(RadonMi { mi }) => min = Some(min.map_or(*mi, |m| m.min(*mi))),
        }
    }
    let mut out = Values::new();
    if let Some(min) = min {
        out.insert("maintainability_index", min);
    }
    Ok(out)
}
