//! Backups before migrating, and restores that lose nothing: pg_dump's custom format out,
//! and back in through a fresh database that takes the old one's name only once it is
//! complete. The old database is kept, renamed, until you drop it.

use std::future::Future;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use diesel::sql_types::{Array, Bool, Integer, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tokio::process::Command;

use crate::db::{self, DatabaseUrl, quote_ident};
use crate::migrations::tool;
use crate::{Error, Result};

/// `pg_dump --format=custom` of the database at `url` into `file`, a new file readable by
/// its owner only (0600). An existing `file` is refused, never overwritten; the dump goes
/// to a hidden file beside it that takes its name only once complete, so a failed or
/// interrupted dump never leaves a partial backup under `file`. Hidden files of earlier
/// dumps to the same `file` whose process is gone (killed) are removed first.
///
/// When `cancel` completes first (Ctrl-C, SIGTERM), pg_dump is stopped, the hidden file
/// removed, and an error returned.
pub async fn dump(url: &DatabaseUrl, file: &Path, cancel: impl Future<Output = ()>) -> Result<()> {
    if file.symlink_metadata().is_ok() {
        return Err(exists_already(file));
    }
    remove_stale_partials(file);
    let partial = partial_path(file);
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .map_err(|e| failed(format!("cannot write {}: {e}", file.display())))?;
    let result = async {
        let (bare, env) = db::tool_connection(url)?;
        let mut pg_dump = Command::new(tool("pg_dump"));
        pg_dump
            .envs(env)
            .args(["--format=custom", "--dbname", &bare])
            .stdout(out.try_clone().map_err(|e| failed(e.to_string()))?);
        run(pg_dump, "pg_dump", "", std::pin::pin!(cancel)).await?;
        out.sync_all()
            .map_err(|e| failed(format!("cannot write {}: {e}", partial.display())))?;
        publish(&partial, file)
    }
    .await;
    let _ = std::fs::remove_file(&partial);
    result
}

/// Removes `.<name>.partial-<pid>` files beside `file` whose process no longer exists: left
/// by a dump whose `migrate` was killed. A live pid (a dump in progress) is left alone.
fn remove_stale_partials(file: &Path) {
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    let prefix = format!(".{name}.partial-");
    let dir = match file.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir.to_path_buf(),
        None => PathBuf::from("."),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let entry_name = entry.file_name();
        let Some(pid) = entry_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|pid| pid.parse::<libc::pid_t>().ok())
            .filter(|pid| *pid > 0)
        else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } == -1
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone && std::fs::remove_file(entry.path()).is_ok() {
            tracing::warn!(file = %entry.path().display(), "removed the partial file of a killed backup");
        }
    }
}

/// `.<name>.partial-<pid>` beside `file`.
fn partial_path(file: &Path) -> PathBuf {
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    file.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

/// Gives the complete dump its name. A hard link fails if the name is taken, so a file
/// that appeared during the dump is not clobbered either; where links are not supported,
/// a rename after one more look.
fn publish(partial: &Path, file: &Path) -> Result<()> {
    match std::fs::hard_link(partial, file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(exists_already(file));
        }
        Err(_) if file.symlink_metadata().is_err() => std::fs::rename(partial, file)
            .map_err(|e| failed(format!("cannot write {}: {e}", file.display())))?,
        Err(_) => return Err(exists_already(file)),
    }
    // The new name must survive a crash too.
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

fn exists_already(file: &Path) -> Error {
    failed(format!(
        "{} exists already: a backup never overwrites a file; choose another name or move \
         that one away",
        file.display()
    ))
}

/// What a restore did with the database it replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replaced {
    /// The previous database, kept under this name, with its database-level settings,
    /// grants and comment carried over to the restored one.
    Kept(String),
    /// There was none: the restored database took the name. Database-level settings
    /// (`ALTER DATABASE … SET`, grants on the database, its comment) are not in a backup.
    Created,
}

/// Who owns the restored objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owners {
    /// The roles that owned them when the backup was made; each must exist (and the
    /// restoring role be allowed to give objects to it).
    AsInBackup,
    /// The role that restores (`pg_restore --no-owner`).
    Restorer,
}

/// Restores `file` (from [`dump`]) as the database of `url`, schema, history and rows
/// together. The file is checked first: one that is not a backup creates nothing. It goes
/// into a new database, created with the backup's encoding, collation, ctype and locale
/// provider, in one transaction; only when that has succeeded is the current database
/// renamed to a kept name and the new one given its place, with the current one's
/// settings, grants, comment, owner and connection limit. A failure at any step leaves the
/// current database as it was. Both renames need the databases free of sessions: stop the
/// application first. When the database does not exist (a disaster), the restored one
/// simply takes its name, and the owner it had in the backup.
///
/// When `cancel` completes before the renames (Ctrl-C, SIGTERM), pg_restore is stopped,
/// the half-loaded database dropped, and an error returned; nothing else changed.
pub async fn restore(
    url: &DatabaseUrl,
    file: &Path,
    owners: Owners,
    cancel: impl Future<Output = ()>,
) -> Result<Replaced> {
    if !file.is_file() {
        return Err(failed(format!("{}: no such backup file", file.display())));
    }
    let name = url.database();
    let mut cancel = std::pin::pin!(cancel);
    let origin = origin(file, cancel.as_mut()).await.map_err(|e| {
        failed(format!(
            "{}; nothing created, {name} is as it was",
            message(e)
        ))
    })?;
    let stem = with_suffix(&name, &format!("_restoring_{}", "0".repeat(14)));
    let stem = &stem[..stem.len() - 14];
    let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
    let staging = url.with_database(&format!("{stem}{stamp}"));
    let kept = with_suffix(&name, &format!("_before_restore_{stamp}"));
    let mut admin = db::connect(&url.with_database("postgres")).await?;
    // CREATE/DROP/ALTER DATABASE take what they take: no slow-query warnings for them.
    diesel_async::AsyncConnection::set_instrumentation(
        &mut admin,
        crate::instrument::QueryTracing::new(std::time::Duration::MAX),
    );
    lock_restores_of(&mut admin, stem, &name).await?;
    drop_stale(&mut admin, stem).await?;
    let current = current_state(&mut admin, &name).await?;
    // CREATE DATABASE takes no bind parameters: the name is quoted, the options' keys come
    // from a fixed list and their values are quoted as literals.
    let mut create = format!(
        "CREATE DATABASE {} TEMPLATE template0",
        quote_ident(&staging.database())
    );
    for (key, value) in &origin.options {
        create.push_str(&format!(" {key} = {}", quote_literal(value)));
    }
    diesel::sql_query(&create)
        .execute(&mut admin)
        .await
        .map_err(|e| {
            failed(format!(
                "{}: {e} (creating it with the backup's encoding and locale: {create}); \
                 {name} is as it was",
                staging.database()
            ))
        })?;

    // Marked at once: a later restore drops only marked copies, never a database that only
    // looks like one by its name.
    let mark = format!(
        "COMMENT ON DATABASE {} IS {}",
        quote_ident(&staging.database()),
        quote_literal(STAGING_MARK)
    );
    diesel::sql_query(mark).execute(&mut admin).await?;

    let loaded = match load(&staging, file, owners, cancel.as_mut()).await {
        // Loaded: the copy is the database now, without the mark (carry_over gives it the
        // current database's comment, if any).
        Ok(()) => {
            let unmark = format!(
                "COMMENT ON DATABASE {} IS NULL",
                quote_ident(&staging.database())
            );
            diesel::sql_query(unmark)
                .execute(&mut admin)
                .await
                .map(|_| ())
                .map_err(Error::from)
        }
        Err(e) => Err(e),
    };
    // Still before any change to `name`: an interruption here loses nothing either.
    let prepared = match (loaded, &current) {
        (Ok(()), Some(state)) => tokio::select! {
            done = async {
                carry_over(&mut admin, state, &staging.database()).await?;
                wait_for_no_sessions(&mut admin, &name).await
            } => done,
            () = cancel.as_mut() => Err(interrupted()),
        },
        (Ok(()), None) => match (&origin.owner, owners) {
            (Some(owner), Owners::AsInBackup) => {
                let sql = format!(
                    "ALTER DATABASE {} OWNER TO {}",
                    quote_ident(&staging.database()),
                    quote_ident(owner)
                );
                (diesel::sql_query(&sql).execute(&mut admin).await)
                    .map(|_| ())
                    .map_err(|e| failed(format!("{sql}: {e}{}", owner_hint())))
            }
            _ => Ok(()),
        },
        (loaded, _) => loaded,
    };
    let swapped = match (prepared, &current) {
        (Ok(()), Some(_)) => swap(&mut admin, &name, &staging.database(), &kept).await,
        (Ok(()), None) => rename(&mut admin, &staging.database(), &name).await,
        (Err(e), _) => Err(e),
    };
    if let Err(e) = swapped {
        let drop = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&staging.database())
        );
        let _ = diesel::sql_query(drop).execute(&mut admin).await;
        let as_it_was = match current {
            Some(_) => "is as it was",
            None => "still does not exist",
        };
        return Err(failed(format!(
            "{}; {} dropped, {name} {as_it_was}",
            message(e),
            staging.database()
        )));
    }
    Ok(match current {
        Some(_) => Replaced::Kept(kept),
        None => Replaced::Created,
    })
}

/// An error's text without the `backup:` prefix of [`Error::Backup`].
fn message(e: Error) -> String {
    match e {
        Error::Backup(message) => message,
        other => other.to_string(),
    }
}

fn owner_hint() -> &'static str {
    "; create the missing role (or grant the restoring role membership in it), or restore \
     with --no-owner to give every object to the role that restores"
}

/// `value` as an SQL string literal (standard_conforming_strings, on since 9.1).
fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// What a backup says about the database it came from.
#[derive(Debug, Default, PartialEq, Eq)]
struct Origin {
    /// `CREATE DATABASE` options worth keeping (encoding, locale), `(KEY, value)`.
    options: Vec<(String, String)>,
    owner: Option<String>,
}

/// Reads `file`'s database entry (pg_dump records it even without `--create`): checks
/// that the file is a backup pg_restore can read, and gives the database's encoding,
/// locale and owner.
async fn origin(
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

fn not_a_backup_hint(file: &Path) -> String {
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

/// pg_restore of `file` into `staging`, stopped (and waited for) if `cancel` completes.
async fn load(
    staging: &DatabaseUrl,
    file: &Path,
    owners: Owners,
    cancel: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<()> {
    let (bare, env) = db::tool_connection(staging)?;
    let mut pg_restore = Command::new(tool("pg_restore"));
    pg_restore
        .envs(env)
        .args(["--single-transaction", "--exit-on-error"])
        .args(["--dbname", &bare])
        .arg(file)
        .stdout(Stdio::null());
    if owners == Owners::Restorer {
        pg_restore.arg("--no-owner");
    }
    match run(pg_restore, "pg_restore", &not_a_backup_hint(file), cancel).await {
        Err(Error::Backup(m))
            if owners == Owners::AsInBackup
                && (m.contains("role \"") && m.contains("does not exist")
                    || m.contains("must be member of role")
                    || m.contains("must be able to SET ROLE")) =>
        {
            Err(failed(format!("{m}{}", owner_hint())))
        }
        other => other.map(|_| ()),
    }
}

/// Only one restore of a database at a time; held until `admin` closes (also when the
/// process dies), so a `_restoring_` database found while holding it is an orphan.
async fn lock_restores_of(admin: &mut AsyncPgConnection, stem: &str, name: &str) -> Result<()> {
    #[derive(diesel::QueryableByName)]
    struct Locked {
        #[diesel(sql_type = Bool)]
        ok: bool,
    }
    // Two-key advisory lock: a class of our own ('rest'), so no other lock collides.
    let Locked { ok } =
        diesel::sql_query("SELECT pg_try_advisory_lock(1919251316, hashtext($1)) AS ok")
            .bind::<Text, _>(stem)
            .get_result(admin)
            .await?;
    match ok {
        true => Ok(()),
        false => Err(failed(format!(
            "another restore of {name} is running; nothing changed"
        ))),
    }
}

/// The comment on a restore's staging database while it loads: only databases that carry
/// it are ever dropped as leftovers.
pub const STAGING_MARK: &str = "migrate restore staging database: dropped by the next restore \
                                of its database if the restore that made it is gone";

/// Drops `<stem><14 digits>` databases marked [`STAGING_MARK`]: left by a restore that was
/// killed before it could clean up (we hold the lock, so none is in progress).
async fn drop_stale(admin: &mut AsyncPgConnection, stem: &str) -> Result<()> {
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = Text)]
        datname: String,
    }
    let found: Vec<Name> = diesel::sql_query(
        "SELECT datname::text AS datname FROM pg_database WHERE left(datname, length($1)) = $1 \
         AND shobj_description(oid, 'pg_database') = $2",
    )
    .bind::<Text, _>(stem)
    .bind::<Text, _>(STAGING_MARK)
    .load(admin)
    .await?;
    for Name { datname } in found {
        let tail = &datname[stem.len()..];
        if tail.len() != 14 || !tail.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let drop = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&datname)
        );
        diesel::sql_query(drop).execute(admin).await?;
        tracing::warn!(database = %datname, "dropped the half-loaded database of an interrupted restore");
    }
    Ok(())
}

/// Database-level state that lives outside the database, in the shared catalogs: a
/// backup of the database's contents does not carry it.
struct DatabaseState {
    name: String,
    owner: String,
    connlimit: i32,
    comment: Option<String>,
    /// `None`: the default privileges.
    grants: Option<Vec<Grant>>,
    /// `(role, "name=value")`; no role: for everyone (`ALTER DATABASE … SET`).
    settings: Vec<(Option<String>, String)>,
}

#[derive(diesel::QueryableByName)]
struct Grant {
    /// `None`: PUBLIC.
    #[diesel(sql_type = Nullable<Text>)]
    grantee: Option<String>,
    #[diesel(sql_type = Text)]
    privilege: String,
    #[diesel(sql_type = Bool)]
    grantable: bool,
}

/// The state of database `name`, or `None` if it does not exist.
async fn current_state(admin: &mut AsyncPgConnection, name: &str) -> Result<Option<DatabaseState>> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        owner: String,
        #[diesel(sql_type = Integer)]
        connlimit: i32,
        #[diesel(sql_type = Nullable<Text>)]
        comment: Option<String>,
        #[diesel(sql_type = Bool)]
        has_acl: bool,
    }
    #[derive(diesel::QueryableByName)]
    struct Setting {
        #[diesel(sql_type = Nullable<Text>)]
        role: Option<String>,
        #[diesel(sql_type = Array<Text>)]
        config: Vec<String>,
    }
    // The shared catalogs have no Diesel schema.
    let row: Option<Row> = diesel::sql_query(
        "SELECT pg_get_userbyid(datdba)::text AS owner, datconnlimit AS connlimit, \
         shobj_description(oid, 'pg_database') AS comment, datacl IS NOT NULL AS has_acl \
         FROM pg_database WHERE datname = $1",
    )
    .bind::<Text, _>(name)
    .get_results(admin)
    .await?
    .pop();
    let Some(row) = row else { return Ok(None) };
    let grants = match row.has_acl {
        false => None,
        true => Some(
            diesel::sql_query(
                "SELECT r.rolname::text AS grantee, a.privilege_type AS privilege, \
                 a.is_grantable AS grantable \
                 FROM pg_database d CROSS JOIN LATERAL aclexplode(d.datacl) a \
                 LEFT JOIN pg_roles r ON r.oid = a.grantee WHERE d.datname = $1",
            )
            .bind::<Text, _>(name)
            .load(admin)
            .await?,
        ),
    };
    let settings: Vec<Setting> = diesel::sql_query(
        "SELECT r.rolname::text AS role, s.setconfig AS config FROM pg_db_role_setting s \
         JOIN pg_database d ON d.oid = s.setdatabase \
         LEFT JOIN pg_roles r ON r.oid = s.setrole WHERE d.datname = $1",
    )
    .bind::<Text, _>(name)
    .load(admin)
    .await?;
    Ok(Some(DatabaseState {
        name: name.to_owned(),
        owner: row.owner,
        connlimit: row.connlimit,
        comment: row.comment,
        grants,
        settings: settings
            .into_iter()
            .flat_map(|s| s.config.into_iter().map(move |c| (s.role.clone(), c)))
            .collect(),
    }))
}

/// Gives `target` the owner, connection limit, comment, grants and settings of `state`.
async fn carry_over(
    admin: &mut AsyncPgConnection,
    state: &DatabaseState,
    target: &str,
) -> Result<()> {
    let db = quote_ident(target);
    // ALTER DATABASE, GRANT and COMMENT take no bind parameters: names are quoted, and
    // values become literals by the server's own quote_literal.
    let mut statements = vec![
        format!("ALTER DATABASE {db} OWNER TO {}", quote_ident(&state.owner)),
        format!("ALTER DATABASE {db} CONNECTION LIMIT {}", state.connlimit),
    ];
    if let Some(comment) = &state.comment {
        statements.push(format!(
            "COMMENT ON DATABASE {db} IS {}",
            literals(admin, &[comment]).await?
        ));
    }
    if let Some(grants) = &state.grants {
        statements.push(format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC"));
        for g in grants {
            // From the server's own catalog, but checked: it is put into SQL as is.
            let privilege = match g.privilege.as_str() {
                p @ ("CREATE" | "CONNECT" | "TEMPORARY") => p,
                other => return Err(failed(format!("unknown database privilege {other:?}"))),
            };
            let to = g.grantee.as_deref().map_or("PUBLIC".into(), quote_ident);
            let option = if g.grantable {
                " WITH GRANT OPTION"
            } else {
                ""
            };
            statements.push(format!(
                "GRANT {privilege} ON DATABASE {db} TO {to}{option}"
            ));
        }
    }
    for (role, setting) in &state.settings {
        let Some((key, value)) = setting.split_once('=') else {
            continue;
        };
        let values = match GUC_LIST_QUOTE.contains(&key.to_ascii_lowercase().as_str()) {
            true => split_guc_list(value),
            false => vec![value.to_owned()],
        };
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let whom = match role {
            Some(role) => format!("ROLE {} IN DATABASE {db}", quote_ident(role)),
            None => format!("DATABASE {db}"),
        };
        statements.push(format!(
            "ALTER {whom} SET {} TO {}",
            quote_ident(key),
            literals(admin, &values).await?
        ));
    }
    for sql in statements {
        diesel::sql_query(&sql)
            .execute(&mut *admin)
            .await
            .map_err(|e| {
                failed(format!(
                    "cannot carry {}'s database-level state over ({sql}): {e}",
                    state.name
                ))
            })?;
    }
    Ok(())
}

/// Settings whose stored value is a list of double-quoted names (PostgreSQL's
/// GUC_LIST_QUOTE; pg_dump's list): each element becomes a literal of its own.
const GUC_LIST_QUOTE: [&str; 6] = [
    "local_preload_libraries",
    "search_path",
    "session_preload_libraries",
    "shared_preload_libraries",
    "temp_tablespaces",
    "unix_socket_directories",
];

/// `"$user", public` → `$user`, `public`: a stored list setting's elements.
fn split_guc_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut element = String::new();
    let mut quoted = false;
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                element.push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut element)),
            c if c.is_whitespace() && !quoted => {}
            c => element.push(c),
        }
    }
    out.push(element);
    out
}

/// `values` as SQL literals separated by commas, quoted by the server.
async fn literals(admin: &mut AsyncPgConnection, values: &[&str]) -> Result<String> {
    #[derive(diesel::QueryableByName)]
    struct Quoted {
        #[diesel(sql_type = Text)]
        q: String,
    }
    let Quoted { q } = diesel::sql_query(
        "SELECT string_agg(quote_literal(v), ', ' ORDER BY n) AS q \
         FROM unnest($1::text[]) WITH ORDINALITY AS u(v, n)",
    )
    .bind::<Array<Text>, _>(values)
    .get_result(admin)
    .await?;
    Ok(q)
}

fn interrupted() -> Error {
    failed("interrupted".into())
}

/// `name` → `kept`, then `staging` → `name`; the first is undone if the second fails.
async fn swap(admin: &mut AsyncPgConnection, name: &str, staging: &str, kept: &str) -> Result<()> {
    rename(admin, name, kept)
        .await
        .map_err(|e| failed(format!("{e} (stop the application first)")))?;
    if let Err(e) = rename(admin, staging, name).await {
        let _ = rename(admin, kept, name).await;
        return Err(e);
    }
    Ok(())
}

async fn rename(admin: &mut AsyncPgConnection, from: &str, to: &str) -> Result<()> {
    let sql = format!(
        "ALTER DATABASE {} RENAME TO {}",
        quote_ident(from),
        quote_ident(to)
    );
    diesel::sql_query(sql).execute(admin).await?;
    Ok(())
}

/// Waits up to 5 s for the sessions on `name` to end (an application that is stopping),
/// else refuses: renaming a database needs it free.
async fn wait_for_no_sessions(admin: &mut AsyncPgConnection, name: &str) -> Result<()> {
    #[derive(diesel::QueryableByName)]
    struct Sessions {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        // pg_stat_activity has no Diesel schema.
        let Sessions { n } = diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind::<Text, _>(name)
        .get_result(admin)
        .await?;
        if n == 0 {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(failed(format!(
                "{n} {} connected to {name}: stop the application first",
                if n == 1 { "session is" } else { "sessions are" }
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// `name` with `suffix`, the name cut (on a character boundary) so the whole fits
/// PostgreSQL's 63 bytes.
fn with_suffix(name: &str, suffix: &str) -> String {
    let mut cut = 63usize.saturating_sub(suffix.len()).min(name.len());
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &name[..cut])
}

/// Runs `command` (`what`) to its end, its stderr collected, and returns its stdout when
/// that is piped; if `cancel` completes first, kills it and waits for it to be gone.
/// `hint` follows a crash or failure without a word. The child dies with us: a `migrate`
/// killed outright (SIGKILL) takes it along instead of leaving it at work.
async fn run(
    mut command: Command,
    what: &str,
    hint: &str,
    cancel: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<Vec<u8>> {
    // SAFETY: between fork and exec only async-signal-safe calls (prctl, getppid, kill).
    // PR_SET_PDEATHSIG fires when the spawning thread ends: a tokio worker, which lives
    // as long as the runtime, and we wait for the child before that ends.
    #[cfg(target_os = "linux")]
    unsafe {
        let parent = libc::getpid();
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died before the prctl: nobody will stop us.
            if libc::getppid() != parent {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            Ok(())
        });
    }
    let mut child = command
        // Its own process group: a Ctrl-C in the terminal reaches only us, and we stop it
        // and clean up, rather than racing its death against our handler.
        .process_group(0)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            failed(format!(
                "cannot run {what} ({e}): install PostgreSQL's client tools"
            ))
        })?;
    let (mut stdout, mut stderr) = (child.stdout.take(), child.stderr.take());
    let finished = tokio::select! {
        finished = async {
            // Both at once: a child blocked on a full pipe would never end.
            let (out, err) = tokio::join!(read_all(stdout.as_mut()), read_all(stderr.as_mut()));
            (child.wait().await, out, err)
        } => Some(finished),
        () = cancel => None,
    };
    let Some((status, stdout, stderr)) = finished else {
        let _ = child.kill().await;
        return Err(interrupted());
    };
    let status = status.map_err(|e| failed(format!("{what}: {e}")))?;
    let stderr = String::from_utf8_lossy(&stderr);
    let stderr = stderr.trim();
    if status.success() {
        return Ok(stdout);
    }
    let said = match stderr.is_empty() {
        true => hint.to_owned(),
        false => format!(": {stderr}"),
    };
    Err(failed(match (status.signal(), status.code()) {
        (Some(signal), _) => format!(
            "{what} was killed by signal {signal} ({}){said}",
            signal_name(signal)
        ),
        (_, Some(code)) if stderr.is_empty() => {
            format!("{what} exited with status {code} and no message{said}")
        }
        _ => format!("{what} failed{said}"),
    }))
}

/// Everything `pipe` gives until it closes (nothing for no pipe).
async fn read_all(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> Vec<u8> {
    let mut text = Vec::new();
    if let Some(mut pipe) = pipe {
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut pipe, &mut text).await;
    }
    text
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        6 => "SIGABRT",
        7 => "SIGBUS",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        15 => "SIGTERM",
        _ => "signal",
    }
}

fn failed(message: String) -> Error {
    Error::Backup(message)
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
    fn list_settings_split_into_elements() {
        assert_eq!(split_guc_list("\"$user\", public"), ["$user", "public"]);
        assert_eq!(split_guc_list("\"a,\"\"b\", c"), ["a,\"b", "c"]);
        assert_eq!(split_guc_list("\"\""), [""]);
    }
}
