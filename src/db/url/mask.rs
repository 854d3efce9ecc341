//! Masking: what of a URL may be shown, for any input, well-formed or not.

use super::hosts::shown;
use super::split_host_list;

/// Masks every part of `raw` that may be a password, for any input. A URL that parses
/// cleanly has its password and `password=` parameters masked. Of anything else only the
/// scheme is shown: nothing tells where in it a password would end. A host list is shown
/// as written, past any password after the last '@', a control character or direction
/// mark in it escaped.
pub fn mask(raw: &str) -> String {
    const STAND_IN: &str = "host-list.invalid";
    let Some((before, list, after)) = split_host_list(raw) else {
        return mask_one(raw);
    };
    let masked = mask_one(&format!("{before}{STAND_IN}{after}"));
    match url::Url::parse(&masked) {
        Ok(url) if url.host_str() == Some(STAND_IN) && url.port().is_none() => {
            use url::Position::{AfterPort, BeforeHost};
            let list = shown(list);
            format!("{}{list}{}", &url[..BeforeHost], &url[AfterPort..])
        }
        _ => masked,
    }
}

/// [`mask`] for a URL with one host.
fn mask_one(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if !misplaced_at(&url, raw) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            // tokio-postgres decodes parameter names: `pass%77ord=` is a password too.
            let secret = |key: &str| key.eq_ignore_ascii_case("password");
            if url.query_pairs().any(|(key, _)| secret(&key)) {
                let pairs: Vec<(String, String)> = (url.query_pairs())
                    .map(|(key, value)| {
                        let value = if secret(&key) {
                            "***".into()
                        } else {
                            value.into()
                        };
                        (key.into_owned(), value)
                    })
                    .collect();
                url.query_pairs_mut().clear().extend_pairs(pairs);
            }
            mask_password_params(url.as_str())
        }
        _ => match raw.split_once("://") {
            Some((scheme, _))
                if scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+') =>
            {
                format!("{scheme}://(rest not shown: it does not parse)")
            }
            _ => "(not shown: not a URL)".to_owned(),
        },
    }
}

/// True when an `@` of `raw` did not end the user info: a reserved character in the
/// password moved part of it into the host, port, path, query or fragment.
pub(super) fn misplaced_at(url: &url::Url, raw: &str) -> bool {
    let outside = [
        url.path(),
        url.query().unwrap_or(""),
        url.fragment().unwrap_or(""),
    ];
    (raw.contains('@') && url.username().is_empty() && url.password().is_none())
        || outside.iter().any(|part| part.contains('@'))
}

/// Masks the value of every `password=` (query parameter or `key=value` form).
pub(super) fn mask_password_params(text: &str) -> String {
    const KEY: &str = "password=";
    let (mut out, mut rest) = (String::new(), text);
    while let Some(at) = rest.to_ascii_lowercase().find(KEY) {
        let value = &rest[at + KEY.len()..];
        let end = match value.chars().next() {
            Some(quote @ ('\'' | '"')) => value[1..].find(quote).map_or(value.len(), |e| e + 2),
            _ => value.find(['&', ' ', '\t', '\n']).unwrap_or(value.len()),
        };
        out.push_str(&rest[..at + KEY.len()]);
        out.push_str("***");
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}
