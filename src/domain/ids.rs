//! Identifiers and the unit of recorded time.
//!
//! Plain newtypes; nothing here reads a clock or draws random numbers.
//!
//! It never reads a clock or the operating system's randomness.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A run id: a random unsigned 64-bit integer, as Flower draws them. SQLite
/// stores it as the signed integer with the same bits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RunId(pub u64);

impl RunId {
    /// The signed integer with the same bits, as stored in SQLite.
    pub(crate) fn to_sql(self) -> i64 {
        self.0 as i64
    }

    pub(crate) fn from_sql(value: i64) -> RunId {
        RunId(value as u64)
    }
}

impl fmt::Debug for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RunId({})", self.0)
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Position of an event in the event table: strictly increasing, assigned by
/// the store when the event is appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Seq(pub u64);

/// Wall-clock time in microseconds since the Unix epoch (UTC).
///
/// Recorded time is *row metadata*: the store stamps every event with it, the
/// state machine receives it as an argument, and it never appears inside an
/// event payload. The engine guarantees that successive events get strictly
/// increasing times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Micros(pub i64);

impl Micros {
    /// Seconds as a float, the unit of Flower's log timestamps.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }

    /// The time that a float number of seconds denotes, rounded to the
    /// nearest microsecond.
    pub(crate) fn from_secs_f64(seconds: f64) -> Micros {
        Micros((seconds * 1e6).round() as i64)
    }

    /// Python's `datetime.isoformat()` of this instant in UTC, as Flower puts
    /// it in `Run` messages: `2026-11-28T02:08:07.123456+00:00`, without the
    /// fraction when it is zero.
    pub(crate) fn to_iso(self) -> String {
        let seconds = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000);
        let time =
            chrono::DateTime::from_timestamp(seconds, (micros * 1000) as u32).unwrap_or(chrono::DateTime::UNIX_EPOCH);
        if micros == 0 {
            time.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
        } else {
            time.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
        }
    }

    /// Parses what [`Micros::to_iso`] writes (and any RFC 3339 time).
    pub(crate) fn parse_iso(text: &str) -> Option<Micros> {
        let time = chrono::DateTime::parse_from_rfc3339(text).ok()?;
        Some(Micros(time.timestamp_micros()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_matches_python_isoformat() {
        assert_eq!(
            Micros(1_795_831_687_123_456).to_iso(),
            "2026-11-28T02:08:07.123456+00:00"
        );
        assert_eq!(Micros(1_795_831_687_000_000).to_iso(), "2026-11-28T02:08:07+00:00");
        assert_eq!(
            Micros(1_795_831_687_000_010).to_iso(),
            "2026-11-28T02:08:07.000010+00:00"
        );
        for micros in [0, 1, 1_795_831_687_123_456, 1_795_831_687_000_000] {
            assert_eq!(Micros::parse_iso(&Micros(micros).to_iso()), Some(Micros(micros)));
        }
    }

    #[test]
    fn run_ids_keep_their_bits_in_sqlite() {
        for id in [0, 1, u64::MAX, 1 << 63, 11552096691401131052] {
            assert_eq!(RunId::from_sql(RunId(id).to_sql()), RunId(id));
        }
    }
}
