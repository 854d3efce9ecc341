//! [`WalPosition`]: a point in the write-ahead log, as PostgreSQL's `pg_lsn` holds it (a
//! 64-bit byte offset, written `16/B374D848`), and the Diesel SQL type that reads and
//! binds it.

use std::fmt;
use std::io::Write;
use std::str::FromStr;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};

/// PostgreSQL's `pg_lsn`: print-schema knows no such column type, and its OID is fixed
/// (3220) since PostgreSQL 9.4, so no lookup is needed, not even through a pooler.
#[derive(Debug, Clone, Copy, diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
#[diesel(postgres_type(oid = 3220, array_oid = 3221))]
pub struct PgLsn;

/// A point in the primary's write-ahead log. A replica that has replayed up to it sees
/// every transaction committed before it was taken.
///
/// It orders by byte offset (`0/9FFFFFF` < `0/10000000`), prints and parses as PostgreSQL
/// writes it, and serializes as that string, so it can travel in a header or a cookie:
/// `"16/B374D848".parse::<WalPosition>()`. It says nothing about your data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, AsExpression, FromSqlRow)]
#[diesel(sql_type = PgLsn)]
pub struct WalPosition(u64);

impl WalPosition {
    /// The position at this byte offset of the log.
    pub const fn new(offset: u64) -> Self {
        WalPosition(offset)
    }

    /// Its byte offset in the log.
    pub const fn offset(self) -> u64 {
        self.0
    }
}

/// The short page header (`SizeOfXLogShortPHD`) and the long one that starts a segment
/// (`SizeOfXLogLongPHD`), in bytes, on 64-bit builds of PostgreSQL 9.5 and later.
const SHORT_HEADER: u64 = 24;
const LONG_HEADER: u64 = 40;

impl WalPosition {
    /// The position to wait for, given the primary's insert position after a commit: the
    /// same, unless it sits just past a page header. No record ends inside a header, so the
    /// commit ended at or before the page boundary, which is where a replica's replay stops
    /// (after a segment switch too); waiting for the byte past the header would wait for a
    /// record an idle primary may never write.
    pub(crate) fn commit_end(insert: WalPosition, block: u64, segment: u64) -> WalPosition {
        let at = insert.0;
        if segment > 0 && at % segment == LONG_HEADER {
            WalPosition(at - LONG_HEADER)
        } else if block > 0 && at % block == SHORT_HEADER {
            WalPosition(at - SHORT_HEADER)
        } else {
            insert
        }
    }
}

impl fmt::Display for WalPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// A string that is not a WAL position (`HIGH/LOW`, each 1 to 8 hex digits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a WAL position (two hex numbers of up to 8 digits, as in 16/B374D848): {0:?}")]
pub struct BadWalPosition(String);

impl FromStr for WalPosition {
    type Err = BadWalPosition;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || {
            // Tokens come from clients: never echo an unbounded string into an error.
            let shown: String = text.chars().take(40).collect();
            BadWalPosition(shown)
        };
        let (high, low) = text.split_once('/').ok_or_else(bad)?;
        let half = |part: &str| {
            let ok = (1..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_hexdigit());
            ok.then(|| u32::from_str_radix(part, 16).ok()).flatten()
        };
        match (half(high), half(low)) {
            (Some(high), Some(low)) => Ok(WalPosition((u64::from(high) << 32) | u64::from(low))),
            _ => Err(bad()),
        }
    }
}

impl serde::Serialize for WalPosition {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for WalPosition {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl FromSql<PgLsn, Pg> for WalPosition {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        // The binary form is the 64-bit offset, big-endian.
        let bytes: [u8; 8] = value
            .as_bytes()
            .try_into()
            .map_err(|_| "pg_lsn: expected 8 bytes")?;
        Ok(WalPosition(u64::from_be_bytes(bytes)))
    }
}

impl ToSql<PgLsn, Pg> for WalPosition {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(&self.0.to_be_bytes())?;
        Ok(IsNull::No)
    }
}

#[cfg(test)]
mod tests {
    use super::WalPosition;

    #[test]
    fn order_is_numeric_not_textual() {
        let low: WalPosition = "0/9FFFFFF".parse().unwrap();
        let high: WalPosition = "0/10000000".parse().unwrap();
        assert!(low < high, "text order would put 0/9FFFFFF last");
        let next_segment: WalPosition = "1/0".parse().unwrap();
        assert!(high < next_segment);
        assert!("0/FFFFFFFF".parse::<WalPosition>().unwrap() < next_segment);
    }

    #[test]
    fn text_round_trips() {
        for text in ["0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF", "0/10000000"] {
            let lsn: WalPosition = text.parse().unwrap();
            assert_eq!(lsn.to_string(), text);
        }
        // PostgreSQL accepts lower case; we print upper case, as it does.
        assert_eq!(
            "16/b374d848".parse::<WalPosition>().unwrap().to_string(),
            "16/B374D848"
        );
        assert_eq!(WalPosition::new(u64::MAX).to_string(), "FFFFFFFF/FFFFFFFF");
    }

    #[test]
    fn serde_carries_the_text_form() {
        let lsn: WalPosition = "3/1A2B".parse().unwrap();
        let json = serde_json::to_string(&lsn).unwrap();
        assert_eq!(json, "\"3/1A2B\"");
        assert_eq!(serde_json::from_str::<WalPosition>(&json).unwrap(), lsn);
        assert!(serde_json::from_str::<WalPosition>("\"3-1A2B\"").is_err());
        assert!(serde_json::from_str::<WalPosition>("42").is_err());
    }

    #[test]
    fn an_insert_position_past_a_page_header_waits_for_the_boundary() {
        let (block, segment) = (8192, 16 * 1024 * 1024);
        let at = |n: u64| WalPosition::commit_end(WalPosition::new(n), block, segment);
        // After pg_switch_wal: 0/4000028 is the first byte past the segment's long header.
        assert_eq!(at(0x400_0028), WalPosition::new(0x400_0000));
        assert_eq!(at(3 * 8192 + 24), WalPosition::new(3 * 8192));
        assert_eq!(at(3 * 8192 + 25), WalPosition::new(3 * 8192 + 25));
        assert_eq!(at(3 * 8192), WalPosition::new(3 * 8192));
        assert_eq!(at(24), WalPosition::new(0));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in [
            "",
            "/",
            "0/",
            "/0",
            "0/0/0",
            "g/0",
            "0/123456789",
            "+1/0",
            "-1/0",
            " 0/0",
            "0/0 ",
            "0x1/0",
            "١/0",
        ] {
            assert!(bad.parse::<WalPosition>().is_err(), "{bad:?} was accepted");
        }
        let long = "A".repeat(10_000);
        let err = long.parse::<WalPosition>().unwrap_err().to_string();
        assert!(err.len() < 200, "the error echoes the whole token");
    }
}
