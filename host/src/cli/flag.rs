//! `tollgate flag`: is this user in this flag's rollout?

use super::Exit;
use crate::evaluate::rollout::{Rollout, bucket};

#[derive(Debug, clap::Args)]
pub(crate) struct FlagArgs {
    /// Flag name.
    #[arg(long)]
    flag: String,
    /// Rollout percentage, 0 to 100.
    #[arg(long, value_parser = percent)]
    percent: f64,
    /// Segments the rollout is restricted to (repeatable).
    #[arg(long = "segment")]
    segments: Vec<String>,
    /// User id.
    #[arg(long)]
    user: String,
    /// Segments the user belongs to (repeatable).
    #[arg(long = "user-segment")]
    user_segments: Vec<String>,
}

/// A `--percent` that is not one.
#[derive(Debug, thiserror::Error)]
enum PercentError {
    #[error("`{0}` is not a percentage")]
    NotANumber(String),
    #[error("`{0}` is not between 0 and 100")]
    OutOfRange(String),
}

fn percent(s: &str) -> Result<f64, PercentError> {
    let v: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| PercentError::NotANumber(s.to_string()))?;
    if (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(PercentError::OutOfRange(s.to_string()))
    }
}

/// Prints `in` or `out` with the user's bucket; exit 0 either way.
pub(crate) fn run(args: FlagArgs) -> anyhow::Result<Exit> {
    let rollout = Rollout {
        flag: args.flag.clone(),
        percent: args.percent,
        segments: args.segments,
    };
    let included = rollout.includes(&args.user, &args.user_segments);
    println!(
        "{} (flag `{}`, user `{}`, bucket {} of 10000, admits buckets below {})",
        if included { "in" } else { "out" },
        args.flag,
        args.user,
        bucket(&args.flag, &args.user),
        (args.percent * 100.0).round()
    );
    Ok(Exit::Success)
}
