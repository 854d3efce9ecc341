//! Where migrations come from: compiled into the binary, or read from a folder at run time.
//! Both use diesel_cli's layout: `<version>_<name>/{up.sql, down.sql, metadata.toml}`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// One migration folder, as compiled in by build.rs.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedMigration {
    /// The folder name, e.g. `2025-01-01-000001_create_users`.
    pub folder: &'static str,
    /// The up.sql text.
    pub up: &'static str,
    /// The down.sql text, if any.
    pub down: Option<&'static str>,
    /// The metadata.toml text, if any.
    pub metadata: Option<&'static str>,
    /// test_data.sql: rows `migrate test` inserts right after this migration.
    pub test_data: Option<&'static str>,
    /// test_expect.sql: a query returning one boolean, `true` at head when data survived.
    pub test_expect: Option<&'static str>,
}

/// The `migrations/` folder as it was when this binary was built.
pub static EMBEDDED: &[EmbeddedMigration] =
    include!(concat!(env!("OUT_DIR"), "/embedded_migrations.rs"));

/// A migration ready to run.
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
    /// Settings from metadata.toml.
    pub settings: Settings,
    /// `test_data.sql`: inserted by `migrate test` right after this migration (diesel_cli
    /// ignores the file).
    pub test_data: Option<String>,
    /// `test_expect.sql`: checked by `migrate test` at head; must return one `true`.
    pub test_expect: Option<String>,
}

/// Per-migration settings from `metadata.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Run inside one transaction (diesel's key). Note diesel's rule, kept here: without a
    /// metadata.toml this is true, but a metadata.toml that omits the key means false.
    pub run_in_transaction: bool,
    /// Overrides the runner's `lock_timeout` for this migration.
    pub lock_timeout: Option<Duration>,
    /// Overrides the runner's `statement_timeout` for this migration.
    pub statement_timeout: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            run_in_transaction: true,
            lock_timeout: None,
            statement_timeout: None,
        }
    }
}

#[derive(serde::Deserialize)]
struct MetadataFile {
    #[serde(default)]
    run_in_transaction: bool,
    lock_timeout: Option<String>,
    statement_timeout: Option<String>,
}

impl Migration {
    /// Builds a migration from a folder name and its files' text.
    pub fn new(folder: &str, up: &str, down: Option<&str>, metadata: Option<&str>) -> Result<Self> {
        let bad = |reason: String| Error::Migration(format!("{folder}: {reason}"));
        let (prefix, _) = folder
            .split_once('_')
            .ok_or_else(|| bad("the folder name must be <version>_<name>".into()))?;
        let version: String = prefix.chars().filter(|c| *c != '-').collect();
        if version.is_empty() || !version.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad(format!(
                "{prefix:?} is not a version (digits and dashes)"
            )));
        }
        let settings = match metadata {
            None => Settings::default(),
            Some(text) => {
                let file: MetadataFile =
                    toml::from_str(text).map_err(|e| bad(format!("metadata.toml: {e}")))?;
                Settings {
                    run_in_transaction: file.run_in_transaction,
                    lock_timeout: file
                        .lock_timeout
                        .map(|t| parse_duration(&t))
                        .transpose()
                        .map_err(bad)?,
                    statement_timeout: file
                        .statement_timeout
                        .map(|t| parse_duration(&t))
                        .transpose()
                        .map_err(bad)?,
                }
            }
        };
        Ok(Migration {
            version,
            folder: folder.to_owned(),
            up: up.to_owned(),
            down: down.map(str::to_owned),
            settings,
            test_data: None,
            test_expect: None,
        })
    }

    /// Adds the `migrate test` fixtures (not part of the checksum: tests may evolve).
    pub fn with_fixtures(mut self, data: Option<&str>, expect: Option<&str>) -> Self {
        self.test_data = data.map(str::to_owned);
        self.test_expect = expect.map(str::to_owned);
        self
    }

    /// SHA-256 of up.sql, down.sql and metadata settings, hex: what `verify` compares.
    pub fn checksum(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(self.up.as_bytes());
        hash.update([0]);
        hash.update(self.down.as_deref().unwrap_or("").as_bytes());
        hash.update([0]);
        hash.update(format!("{:?}", self.settings).as_bytes());
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Parses `500ms`, `5s`, `2min`, `1h` (PostgreSQL's units) into a duration.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 5s"))?;
    let millis = match unit.trim() {
        "ms" => 1,
        "s" | "" => 1_000,
        "min" | "m" => 60_000,
        "h" => 3_600_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (ms, s, min, h)"
            ));
        }
    };
    Ok(Duration::from_millis(number * millis))
}

/// The migrations compiled into this binary, in version order.
pub fn embedded() -> Result<Vec<Migration>> {
    let mut all = EMBEDDED
        .iter()
        .map(|m| {
            Migration::new(m.folder, m.up, m.down, m.metadata)
                .map(|mig| mig.with_fixtures(m.test_data, m.test_expect))
        })
        .collect::<Result<Vec<_>>>()?;
    sort_and_check(&mut all)?;
    Ok(all)
}

/// The migrations in a folder on disk, in version order.
pub fn from_dir(dir: &Path) -> Result<Vec<Migration>> {
    let read = |path: PathBuf| -> Result<Option<String>> {
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Migration(format!("{}: {e}", path.display()))),
        }
    };
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::Migration(format!("{}: {e}", dir.display())))?;
    let mut all = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::Migration(e.to_string()))?.path();
        let Some(up) = read(path.join("up.sql"))? else {
            continue;
        };
        let folder = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let down = read(path.join("down.sql"))?;
        let metadata = read(path.join("metadata.toml"))?;
        let data = read(path.join("test_data.sql"))?;
        let expect = read(path.join("test_expect.sql"))?;
        let migration = Migration::new(&folder, &up, down.as_deref(), metadata.as_deref())?;
        all.push(migration.with_fixtures(data.as_deref(), expect.as_deref()));
    }
    sort_and_check(&mut all)?;
    Ok(all)
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
