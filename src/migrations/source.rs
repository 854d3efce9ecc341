//! Where migrations come from: [`MIGRATIONS`](super::MIGRATIONS), embedded by
//! diesel_migrations' `embed_migrations!`, or a folder read at run time (its
//! `FileBasedMigrations`). Both are diesel_cli's layout:
//! `<version>_<name>/{up.sql, down.sql, metadata.toml}`.
//!
//! diesel_migrations keeps a migration's SQL to itself; the runner needs the text for
//! checksums, for naming the statement that failed, for `--sql` and for lint. So each
//! migration is run once against [`Recorder`], a connection that only writes down the SQL it
//! is handed.

use std::any::Any;
use std::path::Path;

use diesel::QueryResult;
use diesel::connection::{BoxableConnection, SimpleConnection};
use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel_migrations::FileBasedMigrations;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// A migration ready to run, its SQL read out of diesel_migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// Diesel's version: the folder prefix before the first `_`, dashes removed.
    pub version: String,
    /// The folder name.
    pub folder: String,
    /// Forward SQL.
    pub up: String,
    /// Backward SQL; `None` when the folder has no down.sql.
    pub down: Option<String>,
    /// metadata.toml's `run_in_transaction`, as diesel reads it: true without the file,
    /// false when the file omits the key.
    pub run_in_transaction: bool,
    /// `test_data.sql`: inserted by `migrate test` right after this migration (diesel
    /// neither embeds nor runs it, so it is read from the folder on disk).
    pub test_data: Option<String>,
    /// `test_expect.sql`: checked by `migrate test` at head; must return one `true`.
    pub test_expect: Option<String>,
}

/// A connection that runs nothing: it keeps the SQL a migration hands it.
#[derive(Default)]
struct Recorder(String);

impl SimpleConnection for Recorder {
    fn batch_execute(&mut self, query: &str) -> QueryResult<()> {
        self.0.push_str(query);
        Ok(())
    }
}

impl BoxableConnection<Pg> for Recorder {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl Migration {
    /// Reads the SQL and settings of one of diesel_migrations' migrations.
    fn read(m: &dyn diesel::migration::Migration<Pg>) -> Result<Self> {
        let folder = m.name().to_string();
        let mut up = Recorder::default();
        m.run(&mut up)
            .map_err(|e| Error::Migration(format!("{folder}: {e}")))?;
        let mut down = Recorder::default();
        // diesel refuses to revert a migration that has no down.sql.
        let down = m.revert(&mut down).ok().map(|()| down.0);
        Ok(Migration {
            version: m.name().version().to_string(),
            folder,
            up: up.0,
            down,
            run_in_transaction: m.metadata().run_in_transaction(),
            test_data: None,
            test_expect: None,
        })
    }

    /// An applied version whose folder is gone: only its version is known.
    pub fn unknown(version: &str) -> Self {
        Migration {
            version: version.to_owned(),
            folder: version.to_owned(),
            up: String::new(),
            down: None,
            run_in_transaction: true,
            test_data: None,
            test_expect: None,
        }
    }

    /// SHA-256 of up.sql, down.sql and `run_in_transaction`, hex: what `verify` compares.
    pub fn checksum(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(self.up.as_bytes());
        hash.update([0]);
        hash.update(self.down.as_deref().unwrap_or("").as_bytes());
        hash.update([0, u8::from(self.run_in_transaction)]);
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The migrations of a diesel_migrations source, in version order.
pub fn read_all(source: &dyn MigrationSource<Pg>) -> Result<Vec<Migration>> {
    let found = source
        .migrations()
        .map_err(|e| Error::Migration(format!("reading migrations: {e}")))?;
    let mut all = found
        .iter()
        .map(|m| Migration::read(m.as_ref()))
        .collect::<Result<Vec<_>>>()?;
    sort_and_check(&mut all)?;
    Ok(all)
}

/// The migrations in a folder on disk, fixtures included, in version order.
pub fn from_dir(dir: &Path) -> Result<Vec<Migration>> {
    let source = FileBasedMigrations::from_path(dir)
        .map_err(|e| Error::Migration(format!("{}: {e}", dir.display())))?;
    let mut all = read_all(&source)?;
    // A mistyped --dir in CI must not pass as "up to date".
    if all.is_empty() {
        return Err(Error::Migration(format!(
            "{}: no migrations here (folders named <version>_<name> holding up.sql)",
            dir.display()
        )));
    }
    add_fixtures(&mut all, dir);
    Ok(all)
}

/// Reads each migration's `test_data.sql` and `test_expect.sql` from its folder under `dir`.
pub fn add_fixtures(all: &mut [Migration], dir: &Path) {
    for m in all {
        let read = |file: &str| std::fs::read_to_string(dir.join(&m.folder).join(file)).ok();
        m.test_data = read("test_data.sql");
        m.test_expect = read("test_expect.sql");
    }
}

fn sort_and_check(all: &mut [Migration]) -> Result<()> {
    all.sort_by(|a, b| a.version.cmp(&b.version));
    for pair in all.windows(2) {
        if pair[0].version == pair[1].version {
            return Err(Error::Migration(format!(
                "{} and {} share version {}",
                pair[0].folder, pair[1].folder, pair[0].version
            )));
        }
    }
    Ok(())
}

/// One SQL statement of a migration file, with where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// 1-based position among the file's statements.
    pub number: usize,
    /// 1-based line where the statement starts.
    pub line: usize,
    /// The statement's text, comments before it included.
    pub sql: String,
}

/// Splits SQL into statements with squawk's PostgreSQL parser, so semicolons inside strings,
/// dollar-quoted function bodies and comments are not mistaken for ends of statements.
/// Text after the last statement that is not a comment (`VACUM users` without its `;`, which
/// the parser takes for no statement at all) is refused with its line: dropping it would
/// record a migration as applied without running all of it.
pub fn statements(sql: &str) -> Result<Vec<Statement>> {
    use squawk_syntax::ast::AstNode;
    let parsed = squawk_syntax::SourceFile::parse(sql);
    let mut out = Vec::new();
    let mut start = 0usize;
    for stmt in parsed.tree().stmts() {
        let end = usize::from(stmt.syntax().text_range().end());
        // Take the statement's own semicolon, if one follows.
        let rest = &sql[end..];
        let end = match rest.trim_start().strip_prefix(';') {
            Some(_) => end + rest.find(';').unwrap_or(0) + 1,
            None => end,
        };
        let text = &sql[start..end];
        let first = start + (text.len() - text.trim_start().len());
        if !text.trim().is_empty() {
            out.push(Statement {
                number: out.len() + 1,
                line: sql[..first].matches('\n').count() + 1,
                sql: text.trim().to_owned(),
            });
        }
        start = end;
    }
    if let Some(at) = first_non_comment(&sql[start..]) {
        let at = start + at;
        let line = sql[..at].matches('\n').count() + 1;
        // Only ASCII blanks are trimmed: a stray no-break space is what must show.
        let text = (sql[at..].lines().next().unwrap_or(""))
            .trim_matches(|c: char| c.is_ascii_whitespace());
        return Err(Error::Migration(format!(
            "line {line}: {text:?} is not a complete statement (a typo, or a missing `;`?); \
             nothing was run"
        )));
    }
    Ok(out)
}

/// Where the first text that is neither blank nor a comment starts, if any. Comments are
/// `-- ...` to the end of the line and `/* ... */`, which nest in PostgreSQL.
fn first_non_comment(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            (b, _) if b.is_ascii_whitespace() => i += 1,
            (b'-', Some(b'-')) => {
                i = text[i..].find('\n').map_or(bytes.len(), |n| i + n + 1);
            }
            (b'/', Some(b'*')) => {
                let (open, mut depth) = (i, 0usize);
                while i < bytes.len() {
                    match (bytes[i], bytes.get(i + 1)) {
                        (b'/', Some(b'*')) => (depth, i) = (depth + 1, i + 2),
                        (b'*', Some(b'/')) => (depth, i) = (depth - 1, i + 2),
                        _ => i += 1,
                    }
                    if depth == 0 {
                        break;
                    }
                }
                // An unclosed comment is text the server would reject: report it.
                if depth > 0 {
                    return Some(open);
                }
            }
            _ => return Some(i),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str) -> Vec<String> {
        statements(sql)
            .unwrap()
            .into_iter()
            .map(|s| s.sql)
            .collect()
    }

    #[test]
    fn statements_keep_strings_bodies_and_a_last_statement_without_semicolon() {
        let sql = "SELECT ';' ;\nCREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\nSELECT 2";
        assert_eq!(texts(sql).len(), 3);
        assert_eq!(
            texts("SELECT 1; -- done\n/* a /* nested */ note */\n"),
            ["SELECT 1;"]
        );
    }

    #[test]
    fn text_after_the_last_statement_is_refused_with_its_line() {
        for (sql, line) in [
            ("CREATE TABLE t (id int);\nVACUM t", 2),
            ("SELECT 1;\n-- fine\n\n  VACUM users\n", 4),
            ("SELECT 1;\n/* never closed", 2),
        ] {
            let err = statements(sql).unwrap_err().to_string();
            assert!(err.contains(&format!("line {line}:")), "{sql:?}: {err}");
        }
    }
}
