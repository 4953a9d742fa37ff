//! A TIMESTAMP column read for bulk paths. SQLite keeps timestamps as text, and diesel's
//! `NaiveDateTime` decoder tries a list of chrono format strings on each one; at a million
//! rows that parsing is a visible share of an export. `StoredTime` reads the form diesel
//! writes (`YYYY-MM-DD HH:MM:SS` with up to nine fraction digits) by position, and hands
//! any other form to diesel's decoder, so it accepts exactly what `NaiveDateTime` accepts.
//! PostgreSQL's binary timestamps go straight to diesel's decoder. A model takes them with
//! `#[diesel(deserialize_as = StoredTime)]` (or `MaybeStoredTime` for a nullable column) on a
//! `NaiveDateTime` field.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::pg::Pg;
use diesel::sql_types::{Nullable, Timestamp};
use diesel::sqlite::Sqlite;

use crate::db::{MultiBackend, MultiRawValue};

/// A stored UTC timestamp, decoded without format strings where it can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromSqlRow)]
pub struct StoredTime(pub NaiveDateTime);

impl From<StoredTime> for NaiveDateTime {
    fn from(time: StoredTime) -> Self {
        time.0
    }
}

/// A nullable stored timestamp, decoded as `StoredTime` when present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromSqlRow)]
pub struct MaybeStoredTime(pub Option<NaiveDateTime>);

impl From<MaybeStoredTime> for Option<NaiveDateTime> {
    fn from(time: MaybeStoredTime) -> Self {
        time.0
    }
}

impl<DB: Backend> FromSql<Nullable<Timestamp>, DB> for MaybeStoredTime
where
    StoredTime: FromSql<Timestamp, DB>,
{
    fn from_sql(value: DB::RawValue<'_>) -> deserialize::Result<Self> {
        StoredTime::from_sql(value).map(|time| Self(Some(time.0)))
    }

    fn from_nullable_sql(value: Option<DB::RawValue<'_>>) -> deserialize::Result<Self> {
        match value {
            Some(value) => Self::from_sql(value),
            None => Ok(Self(None)),
        }
    }
}

impl FromSql<Timestamp, Sqlite> for StoredTime {
    fn from_sql(mut value: <Sqlite as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        if let Some(time) = parse_written_form(value.read_text()) {
            return Ok(Self(time));
        }
        <NaiveDateTime as FromSql<Timestamp, Sqlite>>::from_sql(value).map(Self)
    }
}

impl FromSql<Timestamp, Pg> for StoredTime {
    fn from_sql(value: <Pg as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        <NaiveDateTime as FromSql<Timestamp, Pg>>::from_sql(value).map(Self)
    }
}

impl FromSql<Timestamp, MultiBackend> for StoredTime {
    fn from_sql(value: MultiRawValue<'_>) -> deserialize::Result<Self> {
        value.from_sql::<Self, Timestamp>()
    }
}

/// `YYYY-MM-DD HH:MM:SS`, a space or `T` between date and time, then nothing or `.` and one
/// to nine digits; `None` for anything else (including impossible dates and leap seconds).
fn parse_written_form(text: &str) -> Option<NaiveDateTime> {
    let bytes = text.as_bytes();
    let (Some(stamp), rest) = (bytes.get(..19), bytes.get(19..).unwrap_or_default()) else {
        return None;
    };
    let separators_fit = stamp[4] == b'-'
        && stamp[7] == b'-'
        && matches!(stamp[10], b' ' | b'T')
        && stamp[13] == b':'
        && stamp[16] == b':';
    if !separators_fit {
        return None;
    }
    let nanos = match rest {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            decimal(digits)? * 10u32.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    let year = i32::try_from(decimal(&stamp[0..4])?).ok()?;
    NaiveDate::from_ymd_opt(year, decimal(&stamp[5..7])?, decimal(&stamp[8..10])?)?
        .and_hms_nano_opt(
            decimal(&stamp[11..13])?,
            decimal(&stamp[14..16])?,
            decimal(&stamp[17..19])?,
            nanos,
        )
}

/// The value of ASCII decimal digits (at most nine); `None` when one is not a digit.
fn decimal(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |value, &digit| {
        digit
            .is_ascii_digit()
            .then(|| value * 10 + u32::from(digit - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::prelude::*;
    use diesel::sql_types::Text;

    /// Reads `text` as a TIMESTAMP through a real SQLite connection: once as `StoredTime`
    /// and once with diesel's own decoder.
    fn both_decoders(text: &str) -> (Option<NaiveDateTime>, Option<NaiveDateTime>) {
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        let query = || {
            diesel::select(
                diesel::dsl::sql::<Timestamp>("CAST(")
                    .bind::<Text, _>(text)
                    .sql(" AS TEXT)"),
            )
        };
        let ours = query()
            .get_result::<StoredTime>(&mut conn)
            .ok()
            .map(|t| t.0);
        let diesels = query().get_result::<NaiveDateTime>(&mut conn).ok();
        (ours, diesels)
    }

    #[test]
    fn reads_what_diesel_writes_and_agrees_with_diesel_elsewhere() {
        let written = [
            "2026-11-28 10:00:00",
            "2026-11-28 10:00:00.5",
            "2026-11-28 10:00:00.123",
            "2026-11-28 10:00:00.123456",
            "2026-11-28 10:00:00.123456789",
            "2024-02-29 23:59:59.999999",
            "0001-01-01 00:00:00",
            "2026-11-28T10:00:00.25",
        ];
        for text in written {
            let (ours, diesels) = both_decoders(text);
            assert!(ours.is_some(), "{text} not read");
            assert_eq!(ours, diesels, "{text}");
            assert_eq!(parse_written_form(text), diesels, "{text}: the fast path");
        }
        // Forms the fast path leaves to diesel (or that nobody accepts) come out the same.
        let others = [
            "2026-11-28 10:00",
            "2026-11-28",
            "2461007.5",
            "2026-02-30 10:00:00",
            "2026-11-28 24:00:00",
            "2026-11-28 10:00:00.1234567891",
            "2026-11-28 10:00:00.",
            "2026-11-28 1a:00:00",
            "not a time",
            "",
        ];
        for text in others {
            assert_eq!(parse_written_form(text), None, "{text}: not the fast path");
            let (ours, diesels) = both_decoders(text);
            assert_eq!(ours, diesels, "{text}");
        }
    }

    #[test]
    fn round_trips_what_the_spine_stores() {
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        let start = NaiveDate::from_ymd_opt(2026, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        for step in 0..2_000i64 {
            let stored = start
                + chrono::Duration::seconds(step * 7_919)
                + chrono::Duration::nanoseconds(step * 1_000_003 % 1_000_000_000);
            let read: StoredTime =
                diesel::select(diesel::dsl::sql::<Timestamp>("").bind::<Timestamp, _>(stored))
                    .get_result(&mut conn)
                    .unwrap();
            assert_eq!(read.0, stored);
        }
    }
}
