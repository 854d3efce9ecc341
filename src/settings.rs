//! Settings read from the environment (`DATABASE_POOL_SIZE`, `DATABASE_SLOW_QUERY_MS`, ...):
//! unset or empty means the default; anything else must parse, or the error names the
//! variable and what it holds.

use crate::{Error, Result};

/// The whole number in `key`, `None` when unset or empty.
pub(crate) fn number(key: &str) -> Result<Option<u64>> {
    let Some(raw) = raw(key) else {
        return Ok(None);
    };
    raw.parse()
        .map(Some)
        .map_err(|_| Error::Config(format!("{key} must be a whole number, got {raw:?}")))
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
