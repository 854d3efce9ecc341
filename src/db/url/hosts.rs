//! libpq's host list (`h1:5432,h2:5433`) in a URL's authority: found, checked entry by
//! entry and put back. `url::Url` holds one host, so the list is cut out before parsing.

/// The most hosts a URL's host list may name: each is tried in turn, each for up to the
/// connect timeout, so a long list is a long wait.
pub const MAX_HOSTS: usize = 16;

/// `raw` cut around its host list, `(before, list, after)`, when its authority names more
/// than one host (a ',' after the last '@'). None for one host, and for a URL with an '@'
/// past the authority: a password with a reserved character, refused (and masked) whole.
pub(super) fn split_host_list(raw: &str) -> Option<(&str, &str, &str)> {
    let (_, rest) = raw.split_once("://")?;
    let start = raw.len() - rest.len();
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if rest[end..].contains('@') {
        return None;
    }
    let authority = &rest[..end];
    let hosts_at = authority.rfind('@').map_or(0, |at| at + 1);
    let list = &authority[hosts_at..];
    list.contains(',')
        .then(|| (&raw[..start + hosts_at], list, &raw[start + end..]))
}

/// The entries of a host list, each checked: a host (a name, an IPv4 address or an IPv6
/// one in brackets) and an optional port from 1 to 65535; no empty entry.
pub(super) fn host_list(list: &str) -> std::result::Result<Vec<String>, String> {
    let entries: Vec<&str> = list.split(',').collect();
    if entries.len() > MAX_HOSTS {
        return Err(format!(
            "the host list names {} hosts; at most {MAX_HOSTS} (each is tried in turn, for up \
             to the connect timeout)",
            entries.len()
        ));
    }
    for (i, entry) in entries.iter().enumerate() {
        let n = i + 1;
        // Refused, and not quoted: it would break the log line or display as another host.
        if entry.chars().any(|c| c.is_whitespace() || hidden(c)) {
            return Err(format!(
                "host {n} of the list holds a space, a control character or a direction mark"
            ));
        }
        if entry.is_empty() {
            return Err(format!(
                "host {n} of the list is empty (h1,,h2, or a ',' at an end): remove the extra ','"
            ));
        }
        let (host, port) = match entry.strip_prefix('[') {
            Some(inner) => {
                let Some((addr, rest)) = inner.split_once(']') else {
                    return Err(format!(
                        "host {n} of the list, {entry:?}, has no closing ']'"
                    ));
                };
                if addr.parse::<std::net::Ipv6Addr>().is_err() {
                    return Err(format!(
                        "host {n} of the list, {entry:?}: [{addr}] is not an IPv6 address"
                    ));
                }
                match (rest, rest.strip_prefix(':')) {
                    ("", _) => (addr, None),
                    (_, Some(port)) => (addr, Some(port)),
                    _ => {
                        return Err(format!(
                            "host {n} of the list, {entry:?}: only :port may follow ']'"
                        ));
                    }
                }
            }
            None => match entry.split_once(':') {
                Some((_, port)) if port.contains(':') => {
                    return Err(format!(
                        "host {n} of the list, {entry:?}, has more than one ':': an IPv6 \
                         address goes in brackets, [::1]:5432"
                    ));
                }
                Some((host, port)) => (host, Some(port)),
                None => (*entry, None),
            },
        };
        if host.is_empty() {
            return Err(format!("host {n} of the list, {entry:?}, has no host name"));
        }
        if let Some(port) = port {
            // Digits only: u16's parse would take "+5432".
            let digits = port.bytes().all(|b| b.is_ascii_digit());
            if !digits || !matches!(port.parse::<u16>(), Ok(1..)) {
                return Err(format!(
                    "host {n} of the list, {entry:?}: the port must be a number from 1 to 65535"
                ));
            }
        }
    }
    Ok(entries.into_iter().map(str::to_owned).collect())
}

/// `url` with `hosts` in place of its host and port; `url` itself when there are none.
pub(super) fn with_hosts(url: &url::Url, hosts: &[String]) -> String {
    use url::Position::{AfterPort, BeforeHost};
    if hosts.is_empty() {
        return url.as_str().to_owned();
    }
    format!(
        "{}{}{}",
        &url[..BeforeHost],
        hosts.join(","),
        &url[AfterPort..]
    )
}

/// A control character (a newline included) or one of Unicode's explicit direction marks,
/// embeddings, overrides and isolates: `"\u{202e}oi.b@a"` displays as `a@b.io`.
pub(super) fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `text` with each [`hidden`] character written as its escape (`\u{202e}`), for showing
/// input that may hold them.
pub(super) fn shown(text: &str) -> String {
    text.chars()
        .map(|c| match hidden(c) {
            true => c.escape_unicode().to_string(),
            false => c.to_string(),
        })
        .collect()
}
