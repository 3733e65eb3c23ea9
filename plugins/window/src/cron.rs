//! Five-field cron schedules (minute, hour, day of month, month, day of
//! week) matched against a local time, with Vixie cron's rules: lists,
//! ranges, steps, month and day names, 7 as Sunday, and when both day
//! fields are restricted a day matching either is enough. Cron crates on
//! crates.io are tied to chrono and its own time-zone database; matching
//! five fields over jiff's `Zoned` is this small.

use std::str::FromStr;

use jiff::Zoned;

/// A parsed schedule: the allowed values of each field as bit sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minute: u64,
    hour: u64,
    day: u64,
    month: u64,
    weekday: u64,
    /// Both day fields restricted: either may match (cron's rule).
    either_day: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// The value the first name stands for.
    names_from: u32,
}

const FIELDS: [FieldSpec; 5] = [
    FieldSpec {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
        names_from: 0,
    },
    FieldSpec {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
        names_from: 0,
    },
    FieldSpec {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
        names_from: 1,
    },
    FieldSpec {
        name: "month",
        min: 1,
        max: 12,
        names: &MONTHS,
        names_from: 1,
    },
    // 7 is Sunday too; folded onto 0 after parsing.
    FieldSpec {
        name: "day of week",
        min: 0,
        max: 7,
        names: &WEEKDAYS,
        names_from: 0,
    },
];

impl FieldSpec {
    fn value(&self, text: &str) -> Result<u32, String> {
        let lower = text.to_ascii_lowercase();
        let v = match self.names.iter().position(|n| *n == lower) {
            Some(i) => u32::try_from(i).unwrap_or(0) + self.names_from,
            None => text
                .parse::<u32>()
                .map_err(|_| format!("`{text}` is not a valid {}", self.name))?,
        };
        if v < self.min || v > self.max {
            return Err(format!(
                "{} `{text}` is out of range {}-{}",
                self.name, self.min, self.max
            ));
        }
        Ok(v)
    }

    /// Parses one field into a bit set.
    fn parse(&self, text: &str) -> Result<u64, String> {
        let mut bits = 0u64;
        for item in text.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => {
                    let step = s.parse::<u32>().ok().filter(|s| *s > 0).ok_or_else(|| {
                        format!("step `{s}` in {} is not a positive number", self.name)
                    })?;
                    (r, step)
                }
                None => (item, 1),
            };
            let (from, to) = if range == "*" {
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                let (a, b) = (self.value(a)?, self.value(b)?);
                if a > b {
                    return Err(format!("range `{range}` in {} runs backwards", self.name));
                }
                (a, b)
            } else {
                let a = self.value(range)?;
                // `5/15` means from 5 to the end, every 15.
                (a, if item.contains('/') { self.max } else { a })
            };
            for v in (from..=to).step_by(usize::try_from(step).unwrap_or(1)) {
                bits |= 1 << v;
            }
        }
        Ok(bits)
    }
}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let expanded = match text.trim() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(format!(
                "expected five fields (minute hour day-of-month month day-of-week), got {} in `{text}`",
                fields.len()
            ));
        };
        let mut weekdays = FIELDS[4].parse(weekday)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays & !(1 << 7)) | 1;
        }
        Ok(Self {
            minute: FIELDS[0].parse(minute)?,
            hour: FIELDS[1].parse(hour)?,
            day: FIELDS[2].parse(day)?,
            month: FIELDS[3].parse(month)?,
            weekday: weekdays,
            either_day: !day.starts_with('*') && !weekday.starts_with('*'),
        })
    }
}

impl Schedule {
    /// Whether the schedule fires at `at`'s local minute.
    pub fn matches(&self, at: &Zoned) -> bool {
        let has = |bits: u64, v: i8| u32::try_from(v).is_ok_and(|v| bits & (1 << v) != 0);
        let day = has(self.day, at.day());
        let weekday = has(self.weekday, at.weekday().to_sunday_zero_offset());
        let day_ok = if self.either_day {
            day || weekday
        } else {
            day && weekday
        };
        has(self.minute, at.minute())
            && has(self.hour, at.hour())
            && has(self.month, at.month())
            && day_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fires(schedule: &str, local: &str) -> bool {
        let s: Schedule = schedule.parse().unwrap();
        let at: Zoned = format!("{local}[UTC]").parse().unwrap();
        s.matches(&at)
    }

    #[test]
    fn fields_lists_ranges_steps_and_names() {
        assert!(fires("*/15 9-17 * * mon-fri", "2026-11-25T09:45"));
        assert!(!fires("*/15 9-17 * * mon-fri", "2026-11-25T09:46"));
        assert!(
            !fires("*/15 9-17 * * mon-fri", "2026-11-28T10:00"),
            "Saturday"
        );
        assert!(fires("0 0 * * 7", "2026-11-29T00:00"), "7 is Sunday");
        assert!(fires("0 0 * * SUN", "2026-11-29T00:00"));
        assert!(fires("30 5/6 * dec *", "2026-12-01T11:30"));
        assert!(fires("0 0 1,15 * *", "2026-11-15T00:00"));
        assert!(fires("@daily", "2026-11-15T00:00"));
    }

    #[test]
    fn both_day_fields_restricted_match_either() {
        // The 13th, or any Friday.
        assert!(fires("0 12 13 * fri", "2026-11-13T12:00"));
        assert!(fires("0 12 13 * fri", "2026-11-20T12:00"));
        assert!(!fires("0 12 13 * fri", "2026-11-19T12:00"));
        // With `*` for the month day, the weekday alone decides.
        assert!(!fires("0 12 * * fri", "2026-11-13T11:00"));
    }

    #[test]
    fn errors_name_the_field() {
        let e = |s: &str| s.parse::<Schedule>().unwrap_err();
        assert_eq!(e("60 * * * *"), "minute `60` is out of range 0-59");
        assert_eq!(e("* * * * funday"), "`funday` is not a valid day of week");
        assert_eq!(e("* 5-2 * * *"), "range `5-2` in hour runs backwards");
        assert_eq!(
            e("*/0 * * * *"),
            "step `0` in minute is not a positive number"
        );
        assert!(e("* * *").starts_with("expected five fields"));
    }
}
