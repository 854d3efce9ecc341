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
pub fn statements(sql: &str) -> Vec<Statement> {
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
    out
}
