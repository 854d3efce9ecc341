//! Settings read from the environment (`DATABASE_POOL_SIZE`, `DATABASE_SLOW_QUERY_MS`, ...):
//! unset or empty means the default; anything else must parse and lie in the setting's
//! range, or the error names the variable, what it holds and what it may hold.

use std::ops::RangeInclusive;

use crate::{Error, Result};

/// The whole number in `key`, `None` when unset or empty. Values outside `range` are
/// refused: a bound of 0 or of centuries is a typo, and durations past the range would
/// overflow `Instant` arithmetic.
pub(crate) fn number(key: &str, range: RangeInclusive<u64>) -> Result<Option<u64>> {
    let Some(raw) = raw(key) else {
        return Ok(None);
    };
    let value: u64 = raw
        .parse()
        .map_err(|_| Error::Config(format!("{key} must be a whole number, got {raw:?}")))?;
    in_range(key, value, range).map(Some)
}

/// `value` of `key` when it lies in `range`; else an error naming both.
pub(crate) fn in_range(key: &str, value: u64, range: RangeInclusive<u64>) -> Result<u64> {
    if range.contains(&value) {
        return Ok(value);
    }
    Err(Error::Config(format!(
        "{key} must be between {} and {}, got {value}",
        range.start(),
        range.end()
    )))
}

/// The value of `key` among `choices`, `None` when unset or empty; else an error listing them.
pub(crate) fn choice<T: Copy>(key: &str, choices: &[(&str, T)]) -> Result<Option<T>> {
    let Some(raw) = raw(key) else {
        return Ok(None);
    };
    match choices.iter().find(|(name, _)| *name == raw) {
        Some((_, value)) => Ok(Some(*value)),
        None => {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            Err(Error::Config(format!(
                "{key} must be one of {}, got {raw:?}",
                names.join(", ")
            )))
        }
    }
}

/// `key`'s value, trimmed; `None` when unset or empty.
fn raw(key: &str) -> Option<String> {
    let value = std::env::var(key).ok()?;
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}
