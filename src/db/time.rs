//! Conversions between the UTC instants the spine works with and the naive UTC timestamps both
//! databases store. Every TIMESTAMP column holds UTC.

use chrono::{DateTime, NaiveDateTime, Utc};

pub fn to_db(t: DateTime<Utc>) -> NaiveDateTime {
    t.naive_utc()
}

pub fn from_db(t: NaiveDateTime) -> DateTime<Utc> {
    t.and_utc()
}
