//! The database URL: parsed and checked once, masked whenever shown, and where it comes
//! from (a flag, `DATABASE_URL`, `DATABASE_DIRECT_URL`).

use std::fmt;

use super::{connect_timeout, tls};
use crate::settings;
use crate::{Error, Result};

mod hosts;
mod mask;

pub use hosts::MAX_HOSTS;
use hosts::{host_list, split_host_list, with_hosts};
pub use mask::mask;
#[cfg(test)]
use mask::mask_password_params;
use mask::misplaced_at;

/// A validated `postgres://` URL, with one host or libpq's host list
/// (`postgres://u@h1:5432,h2:5433/db?target_session_attrs=read-write`). `Display` masks the
/// password; [`DatabaseUrl::expose`] gives the real string to the driver and nowhere else.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    /// The URL as `url::Url` can hold it, with one host: for a host list, its first host.
    /// Everything but the hosts (user info, path, query) is read from here.
    url: url::Url,
    /// A host list's entries as written (`h1:5432`, `[::1]`), two or more; empty for a URL
    /// with one host.
    hosts: Vec<String>,
    /// `url` with the host list in place: what [`DatabaseUrl::expose`] gives.
    full: String,
}

/// What a database name must escape in a URL path: all but letters, digits and `-._~`
/// (RFC 3986's unreserved characters). Escaping `_` too would be valid, but diesel_cli then
/// creates the database under the escaped name.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// PostgreSQL's limit on a name (NAMEDATALEN - 1), in bytes.
pub const MAX_NAME_BYTES: usize = 63;

impl DatabaseUrl {
    /// Parses and checks a URL: scheme postgres/postgresql, user info where it belongs, a
    /// database name, each host of a host list and `target_session_attrs`. Errors show the
    /// input masked by [`mask`], never raw.
    pub fn parse(raw: &str) -> Result<Self> {
        let bad = |reason: &str| Error::BadUrl {
            url: mask(raw),
            reason: reason.to_owned(),
        };
        let Some((before, list, after)) = split_host_list(raw) else {
            return Self::from_parts(parse_one(raw, raw)?, Vec::new()).map_err(|e| bad(&e));
        };
        let hosts = host_list(list).map_err(|e| bad(&e))?;
        // url::Url holds one host: the first stands for the list in every other check.
        let url = parse_one(raw, &format!("{before}{}{after}", hosts[0]))?;
        Self::from_parts(url, hosts).map_err(|e| bad(&e))
    }

    /// The URL with the hosts put back, once its checks past the authority are made.
    fn from_parts(url: url::Url, hosts: Vec<String>) -> std::result::Result<Self, String> {
        let full = with_hosts(&url, &hosts);
        let url = DatabaseUrl { url, hosts, full };
        if url.database().is_empty() {
            return Err("no database name in the path (postgres://host/DBNAME)".into());
        }
        // The server would silently cut a longer name and work on another database.
        let len = url.database().len();
        if len > MAX_NAME_BYTES {
            return Err(format!(
                "the database name is {len} bytes long; PostgreSQL allows at most \
                 {MAX_NAME_BYTES} (and would cut it short, naming another database)"
            ));
        }
        let params = tls::params(&url.url);
        for (key, value) in &params {
            if key == "target_session_attrs" {
                session_attrs(value)?;
            }
        }
        if !url.hosts.is_empty() {
            // The list is in the authority; a second one in the query would make the hosts
            // and ports disagree, and our host-by-host attempts (connect.rs) go in order.
            for (key, value) in &params {
                if matches!(key.as_str(), "host" | "hostaddr" | "port") {
                    return Err(format!(
                        "with a host list, {key}= may not be given too: write each host and \
                         its port in the list (h1:5432,h2:5433)"
                    ));
                }
                if key == "load_balance_hosts" && value != "disable" {
                    return Err(format!(
                        "load_balance_hosts={value} is not supported: a host list is tried in \
                         its order"
                    ));
                }
            }
            // Each host's own URL is what its attempt connects to: it must parse.
            url.each_host()?;
        }
        Ok(url)
    }

    /// The URL with its password, for the driver only: never print it.
    pub fn expose(&self) -> &str {
        &self.full
    }

    /// The database name from the path, percent-decoded.
    pub fn database(&self) -> String {
        let path = self.url.path().trim_start_matches('/');
        percent_encoding::percent_decode_str(path)
            .decode_utf8_lossy()
            .into_owned()
    }

    /// The same server (or host list) and credentials, another database (e.g. `postgres`
    /// for admin work).
    pub fn with_database(&self, name: &str) -> Self {
        let mut url = self.url.clone();
        let encoded: String = percent_encoding::utf8_percent_encode(name, PATH_SEGMENT).collect();
        url.set_path(&format!("/{encoded}"));
        let full = with_hosts(&url, &self.hosts);
        DatabaseUrl {
            url,
            hosts: self.hosts.clone(),
            full,
        }
    }

    /// The URL's parameters and user info, one host standing for all: for what is the same
    /// whichever host answers (the query, TLS settings).
    pub(super) fn first(&self) -> &url::Url {
        &self.url
    }

    /// Each host as a URL of its own, in the list's order, with the host as written: what
    /// one connection attempt is made to. A URL with one host gives itself.
    pub(super) fn each_host(&self) -> std::result::Result<Vec<(String, url::Url)>, String> {
        if self.hosts.is_empty() {
            let host = self.url.host_str().unwrap_or("localhost");
            let host = match self.url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            };
            return Ok(vec![(host, self.url.clone())]);
        }
        (self.hosts.iter().enumerate())
            .map(|(i, host)| {
                let one = with_hosts(&self.url, std::slice::from_ref(host));
                let one = url::Url::parse(&one)
                    .map_err(|e| format!("host {} of the list, {host:?}: {e}", i + 1))?;
                Ok((host.clone(), one))
            })
            .collect()
    }

    /// Whether the URL names a host list rather than one host.
    pub fn is_multi_host(&self) -> bool {
        !self.hosts.is_empty()
    }
}

/// Parses a URL with one host (`text`: `raw` itself, or `raw` with its host list cut to
/// one host) with today's checks: scheme and where the user info ends.
fn parse_one(raw: &str, text: &str) -> Result<url::Url> {
    let bad = |reason: &str| Error::BadUrl {
        url: mask(raw),
        reason: reason.to_owned(),
    };
    let parsed = url::Url::parse(text).map_err(|e| match e {
        url::ParseError::RelativeUrlWithoutBase => {
            bad("it must look like postgres://user:password@host:5432/dbname")
        }
        _ if raw.contains('@') => bad(&format!("{e}{ENCODE_HINT}")),
        _ => bad(&e.to_string()),
    })?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(bad("the scheme must be postgres:// or postgresql://"));
    }
    // An '@' that did not end the user info means the URL split somewhere else: a
    // reserved character in the password moved part of it into the port, path or query.
    if misplaced_at(&parsed, text) {
        return Err(bad(&format!(
            "the '@' is not after the user info{ENCODE_HINT}"
        )));
    }
    Ok(parsed)
}

/// `target_session_attrs` as tokio-postgres 0.7 reads it (`any`, `read-write`,
/// `read-only`); libpq's other values are refused by name rather than faked.
fn session_attrs(value: &str) -> std::result::Result<(), String> {
    match value {
        "any" | "read-write" | "read-only" => Ok(()),
        "primary" | "standby" | "prefer-standby" => Err(format!(
            "target_session_attrs={value} is libpq's, and not supported by the driver here \
             (tokio-postgres knows any, read-write and read-only)"
        )),
        _ => Err(format!(
            "target_session_attrs {value:?} is not one of any, read-write, read-only"
        )),
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask(&self.full))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// Added to URL errors where a reserved character in the password is the likely cause.
const ENCODE_HINT: &str = "; if the password holds @ : / ? # or %, percent-encode them \
                           (@ is %40, : is %3A, / is %2F, ? is %3F, # is %23, % is %25)";

/// The URL given on the command line, else `DATABASE_URL` (also read from `.env`), with
/// an error that says which is missing or unusable.
pub fn url_from(flag: Option<&str>) -> Result<DatabaseUrl> {
    if let Some(raw) = flag {
        return DatabaseUrl::parse(raw);
    }
    match settings::database_url()? {
        Some(raw) => DatabaseUrl::parse(&raw),
        None => Err(Error::NoUrl),
    }
}

/// The URL for work that needs a whole server session (migrations and their advisory
/// lock): the command-line URL, else `DATABASE_DIRECT_URL` (the server itself, past any
/// transaction pooler), else [`url_from`].
pub fn direct_url_from(flag: Option<&str>) -> Result<DatabaseUrl> {
    if flag.is_none()
        && let Some(raw) = settings::direct_url()?
    {
        return DatabaseUrl::parse(&raw);
    }
    url_from(flag)
}

/// How a child tool (pg_dump, diesel_cli) reaches the database: the URL for its command
/// line, without the password, and its environment: the password as `PGPASSWORD` (argv is
/// readable by every local user through `ps`; the environment only by the same user) and
/// the connect bound as `PGCONNECT_TIMEOUT` (whole seconds, at least 2).
pub fn tool_connection(url: &DatabaseUrl) -> Result<(String, Vec<(&'static str, String)>)> {
    let secs = connect_timeout(url)?.as_secs().max(2);
    let mut env = vec![("PGCONNECT_TIMEOUT", secs.to_string())];
    let mut bare = url.first().clone();
    let in_query = (tls::params(&bare).into_iter().rev())
        .find(|(k, _)| k == "password")
        .map(|(_, v)| v);
    let in_userinfo = bare.password().map(|p| {
        percent_encoding::percent_decode_str(p)
            .decode_utf8_lossy()
            .into_owned()
    });
    if let Some(password) = in_userinfo.or(in_query) {
        env.push(("PGPASSWORD", password));
    }
    let _ = bare.set_password(None);
    let bare = tls::without_params(&bare, &["password"]);
    // libpq reads a host list (and target_session_attrs) itself: the tool gets them all.
    Ok((with_hosts(&bare, &url.hosts), env))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(raw: &str) -> String {
        DatabaseUrl::parse(raw).unwrap_err().to_string()
    }

    #[test]
    fn a_url_parses_and_shows_its_password_masked() {
        let url = DatabaseUrl::parse("postgres://app:s3cret@db.example:5433/tasks").unwrap();
        assert_eq!(url.database(), "tasks");
        assert_eq!(url.to_string(), "postgres://app:***@db.example:5433/tasks");
        assert_eq!(
            format!("{url:?}"),
            "DatabaseUrl(postgres://app:***@db.example:5433/tasks)"
        );
        assert_eq!(url.expose(), "postgres://app:s3cret@db.example:5433/tasks");
    }

    #[test]
    fn what_is_wrong_is_named_and_the_password_never_shown() {
        for (raw, reason) in [
            ("mysql://app:s3cret@h/db", "the scheme must be postgres://"),
            ("postgres://app:s3cret@h", "no database name"),
            ("app:s3cret@h/db", "postgres://"),
            // '/' in a password ends the authority: the rest lands in the path.
            ("postgres://app:s3/cret@h/db", "percent-encode"),
            ("postgres://app:s3cret@h/db?password=x@y", "percent-encode"),
        ] {
            let err = refused(raw);
            assert!(err.contains(reason), "{raw}: {err}");
            assert!(
                !err.contains("s3cret") && !err.contains("cret@"),
                "{raw}: {err}"
            );
        }
        let long = format!("postgres://h/{}", "d".repeat(MAX_NAME_BYTES + 1));
        assert!(refused(&long).contains("at most 63"), "{}", refused(&long));
        DatabaseUrl::parse(&format!("postgres://h/{}", "d".repeat(MAX_NAME_BYTES))).unwrap();
    }

    #[test]
    fn mask_hides_passwords_in_any_input() {
        let cases = [
            ("postgres://u:pw@h/db", "postgres://u:***@h/db"),
            (
                "postgres://u@h/db?password=pw&x=1",
                "postgres://u@h/db?password=***&x=1",
            ),
            (
                "postgres://u@h/db?PASSWORD=pw",
                "postgres://u@h/db?PASSWORD=***",
            ),
            ("host=h password='p w' dbname=db", "(not shown: not a URL)"),
            // The last '@' ends the user info: the password is "p@w".
            ("postgres://u:p@w@h/db", "postgres://u:***@h/db"),
            (
                "postgres://u:pw@h:port/db",
                "postgres://(rest not shown: it does not parse)",
            ),
            ("", "(not shown: not a URL)"),
            // A percent-encoded name is the same parameter to tokio-postgres.
            (
                "postgres://u@h/db?pass%77ord=pw&sslmode=require",
                "postgres://u@h/db?password=***&sslmode=require",
            ),
        ];
        for (raw, masked) in cases {
            assert_eq!(mask(raw), masked, "{raw}");
        }
        assert_eq!(
            mask_password_params("a password='p w' b"),
            "a password=*** b"
        );
    }

    #[test]
    fn another_database_on_the_same_server_is_path_encoded() {
        let url = DatabaseUrl::parse("postgres://u:pw@h/app").unwrap();
        let other = url.with_database("my db/ü_x");
        assert_eq!(other.database(), "my db/ü_x");
        assert!(
            other.expose().ends_with("/my%20db%2F%C3%BC_x"),
            "{}",
            other.expose()
        );
        assert!(other.expose().starts_with("postgres://u:pw@h/"));
    }

    #[test]
    fn a_host_list_parses_as_libpq_writes_it() {
        let raw = "postgres://app:s3cret@h1:5432,h2:5433/tasks?target_session_attrs=read-write";
        let url = DatabaseUrl::parse(raw).unwrap();
        assert!(url.is_multi_host());
        assert_eq!(url.database(), "tasks");
        assert_eq!(url.expose(), raw);
        assert_eq!(
            url.to_string(),
            "postgres://app:***@h1:5432,h2:5433/tasks?target_session_attrs=read-write"
        );
        let hosts: Vec<String> = (url.each_host().unwrap().into_iter())
            .map(|(host, one)| format!("{host} {one}"))
            .collect();
        assert_eq!(
            hosts,
            [
                "h1:5432 postgres://app:s3cret@h1:5432/tasks?target_session_attrs=read-write",
                "h2:5433 postgres://app:s3cret@h2:5433/tasks?target_session_attrs=read-write",
            ]
        );
        // Another database keeps the list; ports are optional, IPv6 goes in brackets.
        let other = url.with_database("postgres");
        assert_eq!(
            other.expose(),
            "postgres://app:s3cret@h1:5432,h2:5433/postgres?target_session_attrs=read-write"
        );
        for raw in [
            "postgres://h1,h2/db",
            "postgresql://u@[::1]:5432,[::1],127.0.0.1:6432/db?target_session_attrs=any",
            "postgres://u@h1,h2:5433/db?target_session_attrs=read-only&sslmode=disable",
        ] {
            let url = DatabaseUrl::parse(raw).unwrap();
            assert_eq!(url.expose(), raw);
            assert_eq!(url.to_string(), raw);
        }
        let v6 = DatabaseUrl::parse("postgres://[::1]:5432,[::2]/db").unwrap();
        let firsts: Vec<String> = (v6.each_host().unwrap().into_iter())
            .map(|(_, one)| one.to_string())
            .collect();
        assert_eq!(firsts, ["postgres://[::1]:5432/db", "postgres://[::2]/db"]);
        let most = vec!["h"; MAX_HOSTS].join(",");
        DatabaseUrl::parse(&format!("postgres://{most}/db")).unwrap();
    }

    #[test]
    fn a_malformed_host_list_is_refused_with_what_is_wrong() {
        let too_many = vec!["h"; MAX_HOSTS + 1].join(",");
        for (list, reason) in [
            ("h1,,h2", "host 2 of the list is empty"),
            ("h1,h2,", "host 3 of the list is empty"),
            (",h1", "host 1 of the list is empty"),
            ("h1,:5432", "has no host name"),
            ("h1:0,h2", "from 1 to 65535"),
            ("h1,h2:65536", "from 1 to 65535"),
            ("h1:54x,h2", "from 1 to 65535"),
            ("h1:,h2", "from 1 to 65535"),
            ("h1,::1", "IPv6 address goes in brackets"),
            ("h1,[::1", "no closing ']'"),
            ("h1,[db]:5432", "not an IPv6 address"),
            ("h1,[::1]x", "only :port may follow"),
            ("h1,h 2", "host 2 of the list holds a space"),
            (
                "h1,h2\nINFO all good",
                "host 2 of the list holds a space, a control",
            ),
            ("h1,\u{202e}h2", "a direction mark"),
            (too_many.as_str(), "at most 16"),
        ] {
            let err = refused(&format!("postgres://app:s3cret@{list}/db"));
            assert!(err.contains(reason), "{list}: {err}");
            assert!(!err.contains("s3cret"), "{list}: {err}");
            // Shown escaped: one line, reading as what it is.
            assert!(!err.contains(['\n', '\u{202e}']), "{list}: {err}");
        }
        for (rest, reason) in [
            ("h1,h2/db?port=5432", "port= may not be given too"),
            ("h1,h2/db?host=h3", "host= may not be given too"),
            ("h1,h2/db?load_balance_hosts=random", "tried in its order"),
            (
                "h1,h2/db?target_session_attrs=prefer-standby",
                "not supported by the driver",
            ),
            (
                "h1/db?target_session_attrs=standby",
                "not supported by the driver",
            ),
            (
                "h1/db?target_session_attrs=rw",
                "not one of any, read-write, read-only",
            ),
            ("h1,h2", "no database name"),
            ("h1,h2/", "no database name"),
        ] {
            let err = refused(&format!("postgres://app:s3cret@{rest}"));
            assert!(err.contains(reason), "{rest}: {err}");
            assert!(!err.contains("s3cret"), "{rest}: {err}");
        }
        // The checks of one host hold for a list: scheme, a misplaced '@'.
        for (raw, reason) in [
            (
                "mysql://app:s3cret@h1,h2/db",
                "the scheme must be postgres://",
            ),
            ("postgres://app:s3/cret@h1,h2/db", "percent-encode"),
            ("postgres://app:s3,c/ret@h1,h2/db", "percent-encode"),
        ] {
            let err = refused(raw);
            assert!(err.contains(reason), "{raw}: {err}");
            for fragment in ["s3", "cret", "ret@"] {
                assert!(!err.contains(fragment), "{raw}: {err}");
            }
        }
    }

    #[test]
    fn no_fragment_of_a_password_shows_with_a_host_list() {
        // "p,w@x:y" percent-encoded, and written raw (the last '@' ends the user info).
        for (raw, shown) in [
            (
                "postgres://app:p%2Cw%40x%3Ay@h1:5432,h2/db?password=q%2Cr",
                "postgres://app:***@h1:5432,h2/db?password=***",
            ),
            (
                "postgres://app:p,w@x:y@h1:5432,h2/db",
                "postgres://app:***@h1:5432,h2/db",
            ),
        ] {
            let url = DatabaseUrl::parse(raw).unwrap();
            let bad = format!("{raw}&target_session_attrs=no").replacen("/db&", "/db?", 1);
            let texts = [
                url.to_string(),
                format!("{url:?}"),
                mask(raw),
                refused(&bad),
                refused(&raw.replacen(",h2", ",,h2", 1)),
            ];
            assert_eq!(texts[0], shown);
            for text in texts {
                for fragment in [
                    "p%2C", "%2Cw", "w%40", "%40x", "x%3A", "%3Ay", "p,w", "w@x", "x:y", "q%2C",
                    "%2Cr", "q,r",
                ] {
                    assert!(!text.contains(fragment), "{fragment} in {text}");
                }
            }
        }
        // A tool (pg_dump) gets every host and the password in its environment only.
        let url = DatabaseUrl::parse("postgres://app:p%2Cw@h1,h2:5433/db").unwrap();
        let (bare, env) = tool_connection(&url).unwrap();
        assert_eq!(bare, "postgres://app@h1,h2:5433/db");
        assert!(env.contains(&("PGPASSWORD", "p,w".to_owned())), "{env:?}");
    }
}
