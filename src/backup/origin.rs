//! What a backup says about the database it came from: pg_restore's script of the
//! database entry gives the encoding, locale and owner, and reading it checks the file.

use std::future::Future;
use std::path::Path;
use std::process::Stdio;

use tokio::process::Command;

use super::failed;
use super::process::run;
use crate::migrations::tool;
use crate::{Error, Result};

/// What a backup says about the database it came from.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Origin {
    /// `CREATE DATABASE` options worth keeping (encoding, locale), `(KEY, value)`.
    pub(super) options: Vec<(String, String)>,
    /// The owner, from the `ALTER DATABASE … OWNER TO` line.
    pub(super) owner: Option<String>,
}

/// Reads `file`'s database entry (pg_dump records it even without `--create`): checks
/// that the file is a backup pg_restore can read, and gives the database's encoding,
/// locale and owner.
pub(super) async fn origin(
    file: &Path,
    cancel: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<Origin> {
    let mut pg_restore = Command::new(tool("pg_restore"));
    pg_restore
        .args(["--create", "--schema-only", "--file", "-"])
        .arg(file)
        .stdout(Stdio::piped());
    let hint = not_a_backup_hint(file);
    let text = match run(pg_restore, "pg_restore", &hint, cancel).await {
        Err(Error::Backup(m)) if !m.contains(&hint) && m != "interrupted" => {
            return Err(failed(format!("{m}{hint}")));
        }
        other => other?,
    };
    let text = String::from_utf8_lossy(&text);
    let origin = parse_origin(&text);
    if origin.options.is_empty() {
        tracing::warn!(file = %file.display(), "the backup names no encoding or locale: the restored database gets the server's defaults");
    }
    Ok(origin)
}

pub(super) fn not_a_backup_hint(file: &Path) -> String {
    format!(
        "; is {} a backup made by `migrate upgrade --backup` (pg_dump's custom format), and \
         complete (not truncated)?",
        file.display()
    )
}

/// The options of the `CREATE DATABASE … WITH …;` line and the owner of the `ALTER
/// DATABASE … OWNER TO …;` line in pg_restore's script.
fn parse_origin(script: &str) -> Origin {
    const KEEP: [&str; 8] = [
        "ENCODING",
        "LOCALE_PROVIDER",
        "LOCALE",
        "LC_COLLATE",
        "LC_CTYPE",
        "ICU_LOCALE",
        "ICU_RULES",
        "BUILTIN_LOCALE",
    ];
    let mut origin = Origin::default();
    for line in script.lines() {
        if let Some(rest) = line.strip_prefix("CREATE DATABASE ") {
            let tokens = tokens(rest);
            // name WITH key = value …
            let with = tokens.iter().skip(1).position(|t| t == "WITH");
            let mut at = with.map_or(tokens.len(), |w| w + 2);
            while at + 2 < tokens.len() && tokens[at + 1] == "=" {
                let key = tokens[at].to_ascii_uppercase();
                if KEEP.contains(&key.as_str()) {
                    origin.options.push((key, tokens[at + 2].clone()));
                }
                at += 3;
            }
        } else if line.starts_with("ALTER DATABASE ") {
            // Exactly `ALTER DATABASE name OWNER TO role`: not a SET whose value says so.
            let t = tokens(line);
            if t.len() == 6 && t[3] == "OWNER" && t[4] == "TO" {
                origin.owner = Some(t[5].clone());
            }
        } else if line.starts_with("\\connect ") {
            // The database's own entries are done; what follows is its contents, where a
            // function body may hold any text.
            break;
        }
    }
    origin
}

/// SQL words, `=`, and literals and quoted names (unquoted), up to `;`.
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ';' => break,
            '=' => out.push("=".to_owned()),
            '\'' | '"' => {
                let mut token = String::new();
                while let Some(d) = chars.next() {
                    if d == c {
                        if chars.peek() == Some(&c) {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    token.push(d);
                }
                out.push(token);
            }
            c if c.is_whitespace() => {}
            c => {
                let mut token = String::from(c);
                while let Some(&d) = chars.peek() {
                    if d.is_whitespace() || matches!(d, ';' | '=' | '\'' | '"') {
                        break;
                    }
                    token.push(d);
                    chars.next();
                }
                out.push(token);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backups_database_entry_gives_encoding_locale_and_owner() {
        let script = "SET x = 1;\n\
            CREATE DATABASE \"WITH \"\"odd\"\"\" WITH TEMPLATE = template0 ENCODING = 'SQL_ASCII' \
            LOCALE_PROVIDER = libc LOCALE = 'it''s' TABLESPACE = ts;\n\
            ALTER DATABASE \"WITH \"\"odd\"\"\" OWNER TO \"App Owner\";\n";
        let origin = parse_origin(script);
        let keep = [
            ("ENCODING", "SQL_ASCII"),
            ("LOCALE_PROVIDER", "libc"),
            ("LOCALE", "it's"),
        ];
        let keep: Vec<(String, String)> = keep
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(origin.options, keep);
        assert_eq!(origin.owner.as_deref(), Some("App Owner"));
        assert_eq!(parse_origin("nothing here"), Origin::default());
        let tricky = "CREATE DATABASE d WITH ENCODING = 'UTF8';\n\
            ALTER DATABASE d SET search_path TO 'x OWNER TO y';\n\
            \\connect d\n\
            CREATE DATABASE e WITH ENCODING = 'LATIN1';\n\
            ALTER DATABASE e OWNER TO intruder;\n";
        let origin = parse_origin(tricky);
        assert_eq!(origin.options, [("ENCODING".to_owned(), "UTF8".to_owned())]);
        assert_eq!(origin.owner, None);
    }

    #[test]
    fn tokens_unquote_literals_and_names_and_stop_at_the_semicolon() {
        assert_eq!(
            tokens(r#""a ""b""" WITH KEY='it''s'  other = x; after"#),
            [r#"a "b""#, "WITH", "KEY", "=", "it's", "other", "=", "x"]
        );
        assert_eq!(tokens("''"), [""]);
        assert!(tokens(";").is_empty());
    }
}
