//! Run windows and limits for CronJobs: `--window 01:00-05:00` in a time zone,
//! `--max-runtime 45m`, `--until <time>`. Pure: the deadline of a run is computed from the
//! clock once, at its start; workers stop at the first batch boundary past it.

use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// A daily window, e.g. 01:00-05:00; one that ends before it starts crosses midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl std::fmt::Display for Window {
    /// As it is written: `01:00-05:00`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}-{}",
            self.start.format("%H:%M"),
            self.end.format("%H:%M")
        )
    }
}

impl std::str::FromStr for Window {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (start, end) = text
            .split_once('-')
            .ok_or_else(|| format!("`{text}`: expected HH:MM-HH:MM, e.g. 01:00-05:00"))?;
        let time = |t: &str| {
            NaiveTime::parse_from_str(t.trim(), "%H:%M")
                .map_err(|_| format!("`{t}` in `{text}`: expected HH:MM-HH:MM, e.g. 01:00-05:00"))
        };
        let window = Self {
            start: time(start)?,
            end: time(end)?,
        };
        if window.start == window.end {
            return Err(format!(
                "`{text}`: the window is empty; it must end at another time than it starts"
            ));
        }
        Ok(window)
    }
}

/// What limits one run.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub window: Option<Window>,
    pub time_zone: Option<Tz>,
    pub max_runtime: Option<Duration>,
    pub until: Option<DateTime<Utc>>,
}

/// When a run must stop, and why (for the log and the summary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadline {
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// A run started outside its window does nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub opens_at: DateTime<Utc>,
    pub window: String,
}

impl Limits {
    /// The earliest of the limits from `now`, or `Closed` outside the window.
    pub fn deadline(&self, now: DateTime<Utc>) -> Result<Option<Deadline>, Closed> {
        let tz = self.time_zone.unwrap_or(chrono_tz::UTC);
        let mut candidates = Vec::new();
        if let Some(window) = self.window {
            let (open, close) = window.around(now, tz);
            if now < open {
                return Err(Closed {
                    opens_at: open,
                    window: format!(
                        "{}-{} {tz}",
                        window.start.format("%H:%M"),
                        window.end.format("%H:%M")
                    ),
                });
            }
            candidates.push(Deadline {
                at: close,
                reason: format!(
                    "the run window closed at {} {tz}",
                    window.end.format("%H:%M")
                ),
            });
        }
        if let Some(max) = self.max_runtime {
            let at = now + chrono::Duration::from_std(max).unwrap_or(chrono::Duration::MAX);
            candidates.push(Deadline {
                at,
                reason: format!("--max-runtime {} reached", humantime::format_duration(max)),
            });
        }
        if let Some(until) = self.until {
            candidates.push(Deadline {
                at: until,
                reason: format!("--until {} reached", until.to_rfc3339()),
            });
        }
        Ok(candidates.into_iter().min_by_key(|d| d.at))
    }
}

impl Window {
    /// The window occurrence that contains `now` (open <= now < close), or else the next
    /// one (now < open).
    fn around(self, now: DateTime<Utc>, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
        let today = now.with_timezone(&tz).date_naive();
        let yesterday = today.checked_sub_days(Days::new(1)).unwrap_or(today);
        [
            yesterday,
            today,
            today.checked_add_days(Days::new(1)).unwrap_or(today),
        ]
        .into_iter()
        .map(|day| self.occurrence(day, tz))
        .find(|(_, close)| now < *close)
        .unwrap_or_else(|| self.occurrence(today, tz))
    }

    /// The window opening on `day`, in `tz`.
    fn occurrence(self, day: NaiveDate, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
        let end_day = if self.end > self.start {
            day
        } else {
            day.checked_add_days(Days::new(1)).unwrap_or(day)
        };
        (local(day, self.start, tz), local(end_day, self.end, tz))
    }
}

/// A local wall-clock time as an instant; a time skipped by a DST change counts as the
/// first instant after the gap.
fn local(day: NaiveDate, time: NaiveTime, tz: Tz) -> DateTime<Utc> {
    let naive = day.and_time(time);
    tz.from_local_datetime(&naive)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(naive + chrono::Duration::hours(1)))
                .earliest()
        })
        .map_or_else(|| Utc.from_utc_datetime(&naive), |t| t.with_timezone(&Utc))
}

/// `--until`: an RFC 3339 instant, or HH:MM (the next such time in `tz`).
pub fn parse_until(text: &str, tz: Tz, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Ok(instant.with_timezone(&Utc));
    }
    let time = NaiveTime::parse_from_str(text, "%H:%M").map_err(|_| {
        format!("`{text}`: expected an RFC 3339 time (2026-11-22T05:00:00Z) or HH:MM")
    })?;
    let today = now.with_timezone(&tz).date_naive();
    let at = local(today, time, tz);
    Ok(if at > now {
        at
    } else {
        local(
            today.checked_add_days(Days::new(1)).unwrap_or(today),
            time,
            tz,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn window(text: &str, tz: Tz) -> Limits {
        Limits {
            window: Some(text.parse().unwrap()),
            time_zone: Some(tz),
            ..Limits::default()
        }
    }

    #[test]
    fn inside_the_window_the_deadline_is_its_end() {
        let limits = window("01:00-05:00", chrono_tz::UTC);
        let deadline = limits
            .deadline(utc("2026-11-22T02:30:00Z"))
            .unwrap()
            .unwrap();
        assert_eq!(deadline.at, utc("2026-11-22T05:00:00Z"));
        assert!(
            deadline.reason.contains("window closed at 05:00"),
            "{}",
            deadline.reason
        );
    }

    #[test]
    fn outside_the_window_says_when_it_opens() {
        let limits = window("01:00-05:00", chrono_tz::UTC);
        let closed = limits.deadline(utc("2026-11-22T06:00:00Z")).unwrap_err();
        assert_eq!(closed.opens_at, utc("2026-11-23T01:00:00Z"));
    }

    #[test]
    fn a_window_may_cross_midnight_and_follows_the_time_zone() {
        let berlin = window("22:00-04:00", chrono_tz::Europe::Berlin);
        // 23:30 UTC is 00:30 in Berlin (CET, UTC+1): inside, closing at 04:00 CET = 03:00 UTC.
        let deadline = berlin
            .deadline(utc("2026-11-21T23:30:00Z"))
            .unwrap()
            .unwrap();
        assert_eq!(deadline.at, utc("2026-11-22T03:00:00Z"));
        // 20:00 UTC is 21:00 in Berlin: closed until 22:00 CET = 21:00 UTC.
        let closed = berlin.deadline(utc("2026-11-21T20:00:00Z")).unwrap_err();
        assert_eq!(closed.opens_at, utc("2026-11-21T21:00:00Z"));
    }

    #[test]
    fn the_earliest_limit_wins() {
        let limits = Limits {
            max_runtime: Some(Duration::from_secs(45 * 60)),
            until: Some(utc("2026-11-22T02:00:00Z")),
            ..window("01:00-05:00", chrono_tz::UTC)
        };
        let deadline = limits
            .deadline(utc("2026-11-22T01:30:00Z"))
            .unwrap()
            .unwrap();
        assert_eq!(deadline.at, utc("2026-11-22T02:00:00Z"));
        assert!(
            deadline.reason.starts_with("--until"),
            "{}",
            deadline.reason
        );
        let later = limits
            .deadline(utc("2026-11-22T01:00:00Z"))
            .unwrap()
            .unwrap();
        assert!(
            later.reason.starts_with("--max-runtime 45m"),
            "{}",
            later.reason
        );
        assert_eq!(
            Limits::default().deadline(utc("2026-11-22T01:00:00Z")),
            Ok(None)
        );
    }

    #[test]
    fn windows_and_untils_parse_or_say_what_is_expected() {
        assert!("1-5".parse::<Window>().unwrap_err().contains("HH:MM-HH:MM"));
        assert!(
            "01:00-01:00"
                .parse::<Window>()
                .unwrap_err()
                .contains("empty")
        );
        let now = utc("2026-11-22T06:00:00Z");
        assert_eq!(
            parse_until("05:00", chrono_tz::UTC, now).unwrap(),
            utc("2026-11-23T05:00:00Z")
        );
        assert_eq!(
            parse_until("2026-11-22T07:00:00+01:00", chrono_tz::UTC, now).unwrap(),
            utc("2026-11-22T06:00:00Z")
        );
        assert!(parse_until("soon", chrono_tz::UTC, now).is_err());
    }
}
