//! Conversions between the UTC instants the spine works with and the naive UTC timestamps both
//! databases store. Every TIMESTAMP column holds UTC.

use chrono::{DateTime, NaiveDateTime, Utc};

pub fn to_db(t: DateTime<Utc>) -> NaiveDateTime {
    t.naive_utc()
}

pub fn from_db(t: NaiveDateTime) -> DateTime<Utc> {
    t.and_utc()
}

/// A stored time as the evidence writes it: RFC 3339 in UTC with microseconds (the
/// precision both databases keep), e.g. `2026-11-27T09:00:00.000000Z`.
pub fn rfc3339(t: NaiveDateTime) -> String {
    from_db(t).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
