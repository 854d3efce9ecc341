//! The database URL: parsed and checked once, masked whenever shown, and where it comes
//! from (a flag, `DATABASE_URL`, `DATABASE_DIRECT_URL`).

use std::fmt;

use super::{connect_timeout, tls};
use crate::settings;
use crate::{Error, Result};

/// A validated `postgres://` URL. `Display` masks the password; [`DatabaseUrl::expose`]
/// gives the real string to the driver and nowhere else.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(pub(super) url::Url);

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
    /// Parses and checks a URL: scheme postgres/postgresql, user info where it belongs, and
    /// a database name. Errors show the input masked by [`mask`], never raw.
    pub fn parse(raw: &str) -> Result<Self> {
        let bad = |reason: &str| Error::BadUrl {
            url: mask(raw),
            reason: reason.to_owned(),
        };
        let parsed = url::Url::parse(raw).map_err(|e| match e {
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
        if misplaced_at(&parsed, raw) {
            return Err(bad(&format!(
                "the '@' is not after the user info{ENCODE_HINT}"
            )));
        }
        let url = DatabaseUrl(parsed);
        if url.database().is_empty() {
            return Err(bad("no database name in the path (postgres://host/DBNAME)"));
        }
        // The server would silently cut a longer name and work on another database.
        let len = url.database().len();
        if len > MAX_NAME_BYTES {
            return Err(bad(&format!(
                "the database name is {len} bytes long; PostgreSQL allows at most \
                 {MAX_NAME_BYTES} (and would cut it short, naming another database)"
            )));
        }
        Ok(url)
    }

    /// The URL with its password, for the driver only: never print it.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// The database name from the path, percent-decoded.
    pub fn database(&self) -> String {
        let path = self.0.path().trim_start_matches('/');
        percent_encoding::percent_decode_str(path)
            .decode_utf8_lossy()
            .into_owned()
    }

    /// The same server and credentials, another database (e.g. `postgres` for admin work).
    pub fn with_database(&self, name: &str) -> Self {
        let mut url = self.0.clone();
        let encoded: String = percent_encoding::utf8_percent_encode(name, PATH_SEGMENT).collect();
        url.set_path(&format!("/{encoded}"));
        DatabaseUrl(url)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask(self.0.as_str()))
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

/// Masks every part of `raw` that may be a password, for any input. A URL that parses
/// cleanly has its password and `password=` parameters masked. Of anything else only the
/// scheme is shown: nothing tells where in it a password would end.
pub fn mask(raw: &str) -> String {
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
fn misplaced_at(url: &url::Url, raw: &str) -> bool {
    let outside = [
        url.path(),
        url.query().unwrap_or(""),
        url.fragment().unwrap_or(""),
    ];
    (raw.contains('@') && url.username().is_empty() && url.password().is_none())
        || outside.iter().any(|part| part.contains('@'))
}

/// Masks the value of every `password=` (query parameter or `key=value` form).
fn mask_password_params(text: &str) -> String {
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
    let mut bare = url.0.clone();
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
    Ok((bare.to_string(), env))
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
}
