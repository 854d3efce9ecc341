//! Values a body may hold that PostgreSQL would refuse with a 500 of its own: a NUL
//! character in text ("invalid byte sequence for encoding UTF8: 0x00") and a date before
//! its first day ("date out of range"). Refused here, at the parse, as JSON of the wrong
//! shape (422). The models keep their own behaviour.

use chrono::NaiveDate;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use crate::models::PageRequest;

/// Text without a NUL character.
pub(super) struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(from: D) -> Result<Text, D::Error> {
        let text = String::deserialize(from)?;
        if text.contains('\0') {
            return Err(D::Error::custom(
                "text may not contain a NUL character (\\u0000)",
            ));
        }
        Ok(Text(text))
    }
}

/// A date PostgreSQL can store: from 4714-11-24 BC (chrono's year -4713). Its last one,
/// 5874897-12-31, is past chrono's range, so needs no check.
pub(super) struct Day(pub NaiveDate);

/// PostgreSQL's first date.
fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(-4713, 11, 24).expect("a valid date")
}

impl<'de> Deserialize<'de> for Day {
    fn deserialize<D: Deserializer<'de>>(from: D) -> Result<Day, D::Error> {
        let day = NaiveDate::deserialize(from)?;
        if day < first_day() {
            return Err(D::Error::custom(
                "dates start at 4714-11-24 BC (-4713-11-24)",
            ));
        }
        Ok(Day(day))
    }
}

/// A field that may be absent (`None`, with `#[serde(default)]`) but not `null`: for a
/// column that cannot be cleared, where `null` would otherwise change nothing silently.
pub(super) fn not_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    field: D,
) -> Result<Option<T>, D::Error> {
    Option::<T>::deserialize(field)?
        .map(Some)
        .ok_or_else(|| D::Error::custom("may be left out, but not null"))
}

/// A field that is present, `null` included: `Some(None)` for `null`, while an absent
/// field keeps the `default` (`None`).
pub(super) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    field: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(field).map(Some)
}

#[cfg(test)]
mod tests {
    use super::{Day, Text};

    #[test]
    fn nul_and_dates_before_postgres_are_refused() {
        assert!(serde_json::from_str::<Text>(r#""a\u0000b""#).is_err());
        assert_eq!(serde_json::from_str::<Text>(r#""ab""#).unwrap().0, "ab");
        assert!(serde_json::from_str::<Day>(r#""-4713-11-23""#).is_err());
        assert!(serde_json::from_str::<Day>(r#""-4713-11-24""#).is_ok());
        assert!(serde_json::from_str::<Day>(r#""2026-01-31""#).is_ok());
    }
}

/// `?limit=20&after=ID`, both optional: the query of every keyset page.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PageParams {
    limit: Option<i64>,
    after: Option<i64>,
}

impl PageParams {
    /// The model's page request: `limit` outside 1..=100 is refused (422) before any SQL.
    pub(super) fn request(&self) -> crate::Result<PageRequest> {
        PageRequest::new(self.after, self.limit)
    }
}
