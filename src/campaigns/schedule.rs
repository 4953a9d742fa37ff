//! When campaigns open: a definition's schedule (calendar quarters, months or years, a cron
//! expression, or manual) read in its time zone. A period starts at a fire time and runs to the
//! next one; the campaign of a period is identified by its start (in UTC). Periods follow the
//! zone's calendar and its daylight-saving changes: 09:00 in New York is 14:00 UTC in winter
//! and 13:00 UTC in summer, and is one fire time either way.

use std::str::FromStr;

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use crate::config::CampaignDefinition;
use crate::error::ConfigProblem;

/// A definition's schedule, parsed.
#[derive(Debug, Clone)]
pub struct Schedule {
    kind: Kind,
    zone: Tz,
}

#[derive(Debug, Clone)]
enum Kind {
    Manual,
    Quarterly,
    Monthly,
    Yearly,
    Cron(Box<cron::Schedule>),
}

impl Schedule {
    /// Parses `schedule` and `timezone` of a definition; problems name `key`'s fields.
    pub fn of(key: &str, definition: &CampaignDefinition) -> Result<Schedule, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let zone = Tz::from_str(definition.timezone.trim()).map_err(|_| {
            ConfigProblem::new(
                &format!("{key}.timezone"),
                format!(
                    "`{}` is not an IANA time zone name such as `Europe/Berlin` or `UTC`",
                    definition.timezone
                ),
            )
        });
        let text = definition.schedule.trim();
        let kind = match text.to_ascii_lowercase().as_str() {
            "manual" => Ok(Kind::Manual),
            "quarterly" => Ok(Kind::Quarterly),
            "monthly" => Ok(Kind::Monthly),
            "yearly" | "annually" => Ok(Kind::Yearly),
            _ => parse_cron(text)
                .map(|c| Kind::Cron(Box::new(c)))
                .map_err(|reason| {
                    ConfigProblem::new(
                        &format!("{key}.schedule"),
                        format!(
                            "`{text}` is neither quarterly, monthly, yearly, manual nor a cron \
                         expression (minute hour day month weekday): {reason}"
                        ),
                    )
                }),
        };
        let (kind, zone) = match (kind, zone) {
            (Ok(kind), Ok(zone)) => (kind, zone),
            (kind, zone) => {
                problems.extend(kind.err());
                problems.extend(zone.err());
                return Err(problems);
            }
        };
        Ok(Schedule { kind, zone })
    }

    /// Whether campaigns open by themselves at all.
    pub fn is_manual(&self) -> bool {
        matches!(self.kind, Kind::Manual)
    }

    /// The start of the period `at` falls in; `None` for a manual schedule or a cron
    /// expression that never fired before `at`.
    pub fn period_containing(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&self.zone);
        let (year, month) = (local.year(), local.month());
        match &self.kind {
            Kind::Manual => None,
            Kind::Quarterly => self.midnight(year, (month - 1) / 3 * 3 + 1),
            Kind::Monthly => self.midnight(year, month),
            Kind::Yearly => self.midnight(year, 1),
            Kind::Cron(cron) => {
                // The latest fire time at or before `at`.
                let just_after = local + chrono::Duration::seconds(1);
                cron.after(&just_after)
                    .next_back()
                    .map(|t| t.with_timezone(&Utc))
            }
        }
    }

    /// The first period start after `at`.
    pub fn next_after(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&self.zone);
        let (year, month) = (local.year(), local.month());
        let next_month = |months: u32| {
            let index = (year * 12 + month as i32 - 1) + months as i32;
            (index.div_euclid(12), index.rem_euclid(12) as u32 + 1)
        };
        match &self.kind {
            Kind::Manual => None,
            Kind::Quarterly => {
                let (y, m) = next_month(3 - (month - 1) % 3);
                self.midnight(y, m)
            }
            Kind::Monthly => {
                let (y, m) = next_month(1);
                self.midnight(y, m)
            }
            Kind::Yearly => self.midnight(year + 1, 1),
            Kind::Cron(cron) => cron.after(&local).next().map(|t| t.with_timezone(&Utc)),
        }
    }

    /// Every period start in `(after, until]`, oldest first (at most `limit` of them).
    pub fn starts_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut at = after;
        while out.len() < limit {
            match self.next_after(at) {
                Some(next) if next <= until => {
                    out.push(next);
                    at = next;
                }
                _ => break,
            }
        }
        out
    }

    /// Local midnight on the first of `month`, in UTC (the first valid instant if a
    /// daylight-saving change skips midnight).
    fn midnight(&self, year: i32, month: u32) -> Option<DateTime<Utc>> {
        let day = NaiveDate::from_ymd_opt(year, month, 1)?;
        let mut time = day.and_hms_opt(0, 0, 0)?;
        for _ in 0..4 {
            match self.zone.from_local_datetime(&time) {
                LocalResult::Single(t) => return Some(t.with_timezone(&Utc)),
                LocalResult::Ambiguous(first, _) => return Some(first.with_timezone(&Utc)),
                LocalResult::None => time += chrono::Duration::minutes(30),
            }
        }
        None
    }
}

/// A cron expression in the usual 5 fields (the `cron` crate wants seconds first).
fn parse_cron(text: &str) -> Result<cron::Schedule, String> {
    let fields = text.split_whitespace().count();
    let normalized = match fields {
        5 => format!("0 {text}"),
        6 | 7 => text.to_string(),
        n => return Err(format!("it has {n} fields, not 5")),
    };
    cron::Schedule::from_str(&normalized).map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn schedule(schedule: &str, timezone: &str) -> Schedule {
        let definition = CampaignDefinition {
            schedule: schedule.into(),
            timezone: timezone.into(),
            ..CampaignDefinition::for_source("corp", vec!["a@x".into()])
        };
        Schedule::of("campaigns.q", &definition).unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn quarters_follow_the_zone_calendar() {
        let s = schedule("quarterly", "Europe/Berlin");
        // 23:30 on 31 December in Berlin is still Q4 there.
        assert_eq!(
            s.period_containing(utc("2026-12-31T22:30:00Z")),
            Some(utc("2026-09-30T22:00:00Z"))
        );
        assert_eq!(
            s.next_after(utc("2026-12-31T22:30:00Z")),
            Some(utc("2026-12-31T23:00:00Z"))
        );
        assert_eq!(
            s.period_containing(utc("2026-12-31T23:00:30Z")),
            Some(utc("2026-12-31T23:00:00Z"))
        );
        let monthly = schedule("monthly", "UTC");
        assert_eq!(
            monthly.next_after(utc("2026-12-15T00:00:00Z")),
            Some(utc("2027-01-01T00:00:00Z"))
        );
        assert_eq!(
            schedule("yearly", "UTC").period_containing(utc("2026-07-01T00:00:00Z")),
            Some(utc("2026-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn cron_fire_times_keep_local_time_across_daylight_saving() {
        // Mondays 09:00 in New York; DST starts on 14 March 2027.
        let s = schedule("0 9 * * Mon", "America/New_York");
        let starts = s.starts_between(utc("2027-03-01T00:00:00Z"), utc("2027-03-23T00:00:00Z"), 10);
        assert_eq!(
            starts,
            vec![
                utc("2027-03-01T14:00:00Z"),
                utc("2027-03-08T14:00:00Z"),
                utc("2027-03-15T13:00:00Z"),
                utc("2027-03-22T13:00:00Z"),
            ]
        );
        assert_eq!(
            s.period_containing(utc("2027-03-15T13:00:00Z")),
            Some(utc("2027-03-15T13:00:00Z"))
        );
        assert_eq!(
            s.period_containing(utc("2027-03-15T12:59:59Z")),
            Some(utc("2027-03-08T14:00:00Z"))
        );
    }

    #[test]
    fn bad_schedules_and_zones_name_their_key() {
        let definition = CampaignDefinition {
            schedule: "every tuesday".into(),
            timezone: "Mars/Olympus".into(),
            ..CampaignDefinition::for_source("corp", vec!["a@x".into()])
        };
        let problems = Schedule::of("campaigns.q", &definition).unwrap_err();
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, vec!["campaigns.q.schedule", "campaigns.q.timezone"]);
        assert!(
            schedule("manual", "UTC")
                .period_containing(utc("2026-01-01T00:00:00Z"))
                .is_none()
        );
    }
}
