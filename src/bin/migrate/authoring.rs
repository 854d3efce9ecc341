//! Writing migrations: `init` sets up the folder, `create` adds a migration to it (drafted by
//! diesel_cli with `--autogenerate`). Files only, but for the draft's comparison.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use app::db::{self, DatabaseUrl};
use app::migrations::{self, Migrator};
use app::{errln, outln};
use clap::Subcommand;

use super::{Globals, project_dir};

/// The verbs that write migration files.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Set up migrations/, diesel.toml and the setup migration (safe to repeat).
    #[command(display_order = 0)]
    Init,
    /// Create a new timestamped migration folder with up.sql and down.sql.
    #[command(display_order = 1)]
    Create {
        /// What the migration does, e.g. "add user table".
        message: String,
        /// Draft it with `diesel migration generate --diff-schema` (needs diesel_cli).
        #[arg(long)]
        autogenerate: bool,
        /// Mark it run_in_transaction = false (for CREATE INDEX CONCURRENTLY).
        #[arg(long)]
        no_transaction: bool,
    },
}

/// Runs one of these verbs. They work on files, possibly before any migration exists, so
/// the migrations are not loaded.
pub async fn run(verb: Verb, globals: &Globals) -> anyhow::Result<ExitCode> {
    let dir = globals.dir();
    match verb {
        Verb::Init => init(&dir)?,
        Verb::Create {
            message,
            autogenerate,
            no_transaction,
        } => create(globals, &dir, &message, autogenerate, no_transaction).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// diesel_cli's first migration, which `init` writes from the one compiled in.
const SETUP_FOLDER: &str = "00000000000000_diesel_initial_setup";

/// `init`: the folder, diesel.toml beside it and the setup migration, each only if missing.
fn init(dir: &Path) -> anyhow::Result<()> {
    let created =
        |what: &str, did: bool| outln!("{what}: {}", if did { "created" } else { "exists" });
    let existed = dir.is_dir();
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    created(&dir.display().to_string(), !existed);
    let config = dir.parent().unwrap_or(dir).join("diesel.toml");
    let has_config = config.exists();
    if !has_config {
        std::fs::write(
            &config,
            "[print_schema]\nfile = \"src/schema.rs\"\n\n[migrations_directory]\ndir = \"migrations\"\n",
        )?;
    }
    created(&config.display().to_string(), !has_config);
    let setup = dir.join(SETUP_FOLDER);
    let has_setup = setup.join("up.sql").exists();
    if !has_setup {
        std::fs::create_dir_all(&setup)?;
        let embedded = Migrator::embedded()?;
        let (up, down) = embedded
            .migrations()
            .iter()
            .find(|m| m.folder == SETUP_FOLDER)
            .map(|m| (m.up.as_str(), m.down.as_deref().unwrap_or("")))
            .unwrap_or(("-- setup\n", "-- setup\n"));
        std::fs::write(setup.join("up.sql"), up)?;
        std::fs::write(setup.join("down.sql"), down)?;
    }
    created(&setup.display().to_string(), !has_setup);
    Ok(())
}

/// `create`: a new folder with up.sql and down.sql, or diesel_cli's draft.
async fn create(
    globals: &Globals,
    dir: &Path,
    message: &str,
    autogenerate: bool,
    no_transaction: bool,
) -> anyhow::Result<()> {
    let slug = slug(message);
    if slug.is_empty() {
        bail!("the message must contain letters or digits");
    }
    let folder = new_folder(dir, &slug)?;
    if autogenerate {
        return autogenerate_into(&globals.url()?, &folder, &slug).await;
    }
    let comment = comment(message);
    std::fs::write(folder.join("up.sql"), format!("-- {comment}\n"))?;
    std::fs::write(folder.join("down.sql"), format!("-- Undo: {comment}\n"))?;
    if no_transaction {
        std::fs::write(folder.join("metadata.toml"), "run_in_transaction = false\n")?;
    }
    outln!("created {}", folder.display());
    Ok(())
}

/// The folder name's words: any Unicode letter or digit is kept, lowercased; everything else
/// separates words.
fn slug(message: &str) -> String {
    message
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

/// The message as one SQL comment line: no newline can start a statement.
fn comment(message: &str) -> String {
    message
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `create --autogenerate`: diesel_cli drafts `folder` from the difference between
/// src/schema.rs and the database. Nothing is drafted when they agree, and the drop-and-add
/// diesel_cli's diff writes for every enum column (it does not understand their types) is
/// taken out.
async fn autogenerate_into(url: &DatabaseUrl, folder: &Path, slug: &str) -> anyhow::Result<()> {
    std::fs::remove_dir(folder)?;
    let committed = std::fs::read_to_string(project_dir().join("src/schema.rs"))
        .context("read src/schema.rs")?;
    if migrations::print_schema(url, &project_dir())? == committed {
        outln!("nothing to draft: src/schema.rs matches the database");
        return Ok(());
    }
    // diesel writes the folder itself; it gets the version we reserved, never a used one.
    let name = folder.file_name().unwrap_or_default().to_string_lossy();
    let version = name.split('_').next().unwrap_or_default();
    let dir = folder.parent().unwrap_or(folder);
    let (bare, env) = db::tool_connection(url)?;
    // diesel_cli takes a file lock on `.diesel_lock` in the folder and leaves the file behind;
    // a stray file there trips whatever expects only migration folders.
    let lock = dir.join(".diesel_lock");
    let had_lock = lock.exists();
    let status = std::process::Command::new("diesel")
        .envs(env)
        .args(["migration", "generate", "--diff-schema", slug])
        .args(["--version", version, "--database-url", &bare])
        .arg("--migration-dir")
        .arg(dir)
        .status();
    if !had_lock {
        let _ = std::fs::remove_file(&lock);
    }
    let status = status.context("run diesel migration generate (install diesel_cli)")?;
    if !status.success() {
        bail!("diesel migration generate --diff-schema failed ({status})");
    }
    for (table, column) in enum_columns(url).await? {
        let noise = [
            format!("ALTER TABLE \"{table}\" DROP COLUMN \"{column}\";"),
            format!("ALTER TABLE \"{table}\" ADD COLUMN \"{column}\" "),
        ];
        for file in ["up.sql", "down.sql"] {
            let path = folder.join(file);
            let sql = std::fs::read_to_string(&path)?;
            let kept: Vec<&str> = sql
                .lines()
                .filter(|l| !noise.iter().any(|n| l.starts_with(n.as_str())))
                .collect();
            if kept.len() < sql.lines().count() {
                std::fs::write(&path, kept.join("\n") + "\n")?;
                errln!(
                    "{file}: left out diesel_cli's drop and re-add of enum column {table}.{column}"
                );
            }
        }
    }
    outln!(
        "drafted {} by diesel --diff-schema: review it (types, defaults, indexes are not diffed), then `migrate lint`",
        folder.display()
    );
    Ok(())
}

/// `(table, column)` of every enum-typed column in `public`.
async fn enum_columns(url: &DatabaseUrl) -> anyhow::Result<Vec<(String, String)>> {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct EnumColumn {
        #[diesel(sql_type = diesel::sql_types::Text)]
        t: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        c: String,
    }
    let mut conn = db::connect(url).await?;
    // information_schema has no Diesel schema; this fixed query takes no input.
    let rows: Vec<EnumColumn> = diesel::sql_query(
        "SELECT table_name::text AS t, column_name::text AS c FROM information_schema.columns \
         WHERE table_schema = 'public' AND data_type = 'USER-DEFINED'",
    )
    .load(&mut conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.t, r.c)).collect())
}

/// How a migration folder's version is written: `2025-01-01-120000`.
pub(crate) const VERSION_FORMAT: &str = "%Y-%m-%d-%H%M%S";

/// The version for a new migration in `dir`: now, or one second past the newest folder
/// when that is not older (two runs in a second, a clock behind). Whole seconds, as
/// versions are: a folder made earlier in this second is not older.
pub(crate) fn first_free_version(dir: &Path) -> chrono::NaiveDateTime {
    let newest = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let version = name.split('_').next()?.replace('-', "");
            chrono::NaiveDateTime::parse_from_str(&version, "%Y%m%d%H%M%S").ok()
        })
        .max();
    let now = chrono::SubsecRound::trunc_subsecs(chrono::Utc::now().naive_utc(), 0);
    match newest.filter(|n| *n >= now) {
        Some(newest) => newest + chrono::Duration::seconds(1),
        None => now,
    }
}

/// Creates `<timestamp>_<slug>` with a version newer than every folder in `dir`
/// ([`first_free_version`]). `create_dir` fails if the folder exists, so concurrent runs
/// never share one.
fn new_folder(dir: &Path, slug: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut at = first_free_version(dir);
    loop {
        let folder = dir.join(format!("{}_{slug}", at.format(VERSION_FORMAT)));
        match std::fs::create_dir(&folder) {
            Ok(()) => return Ok(folder),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                at += chrono::Duration::seconds(1);
            }
            Err(e) => return Err(e).with_context(|| format!("create {}", folder.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{comment, new_folder, slug};

    #[test]
    fn a_message_becomes_a_slug_of_its_letters_and_digits() {
        assert_eq!(slug("Add user table"), "add_user_table");
        assert_eq!(
            slug("  add-index: tasks(owner_id)!  "),
            "add_index_tasks_owner_id"
        );
        assert_eq!(slug("Größe ändern 2"), "größe_ändern_2");
        assert_eq!(slug("--- !!!"), "");
    }

    #[test]
    fn a_message_becomes_one_comment_line() {
        assert_eq!(
            comment("add\nDROP TABLE users;\r\n--x"),
            "add DROP TABLE users; --x"
        );
        assert_eq!(comment("tab\there\u{0}nul"), "tab here nul");
    }

    #[test]
    fn new_folders_are_newer_than_every_existing_one() {
        let dir = std::env::temp_dir().join(format!("migrate-new-folder-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // A folder from the future (a clock behind): the next one still sorts after it.
        std::fs::create_dir_all(dir.join("2999-01-01-000000_later")).unwrap();
        let first = new_folder(&dir, "a").unwrap();
        let second = new_folder(&dir, "a").unwrap();
        let name = |p: &std::path::Path| p.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(name(&first), "2999-01-01-000001_a");
        assert_eq!(name(&second), "2999-01-01-000002_a");
        std::fs::remove_dir_all(&dir).unwrap();
        // Within one second and under other names: still one version each.
        std::fs::create_dir_all(&dir).unwrap();
        let versions: Vec<String> = ["a", "b", "c"]
            .map(|slug| name(&new_folder(&dir, slug).unwrap()))
            .map(|n| n.split('_').next().unwrap().to_owned())
            .to_vec();
        assert!(
            versions[0] < versions[1] && versions[1] < versions[2],
            "{versions:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
