//! What `migrate test` and `migrate check` do on a [`Scratch`] database: every migration up,
//! down and up again with the schema compared by `pg_dump`, data that must survive to head,
//! an index for every foreign key, and `diesel print-schema` against `src/schema.rs`.

use std::path::Path;
use std::process::Command;

use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::runner::{Migrator, Target};
use super::scratch::Scratch;
use crate::db::{self, DatabaseUrl};
use crate::{Error, Result};

/// `pg_dump --schema-only` of a database, without the runner's own bookkeeping, so two
/// dumps of the same schema compare equal.
pub fn dump_schema(url: &DatabaseUrl) -> Result<String> {
    let (bare, env) = db::tool_connection(url)?;
    let out = Command::new(tool("pg_dump"))
        .envs(env)
        .args([
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--exclude-schema=migrate",
        ])
        .args([
            "--exclude-table=public.__diesel_schema_migrations",
            "--dbname",
            &bare,
        ])
        .output()
        .map_err(|e| {
            Error::Migration(format!(
                "cannot run pg_dump ({e}): install PostgreSQL's client tools"
            ))
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).replace(url.expose(), &url.to_string());
        return Err(Error::Migration(format!(
            "pg_dump failed: {}",
            stderr.trim()
        )));
    }
    Ok(normalize(&String::from_utf8_lossy(&out.stdout)))
}

/// Drops comment lines (versions, timestamps) and sorts the lines inside each
/// `CREATE TABLE (...)`: a down.sql that re-adds a dropped column cannot put it back in its
/// old position, and column order is not what a round trip must preserve.
fn normalize(dump: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut table: Option<Vec<String>> = None;
    for line in dump.lines() {
        if line.starts_with("--")
            || line.starts_with("\\restrict")
            || line.starts_with("\\unrestrict")
        {
            continue;
        }
        match table.as_mut() {
            Some(columns) if line.starts_with(')') => {
                columns.sort();
                out.append(columns);
                out.push(line.to_owned());
                table = None;
            }
            Some(columns) => columns.push(line.trim_end_matches(',').to_owned()),
            None => {
                out.push(line.to_owned());
                if line.starts_with("CREATE TABLE ") && line.ends_with('(') {
                    table = Some(Vec::new());
                }
            }
        }
    }
    out.join("\n")
}

/// pg_dump and friends: on PATH, else where Debian keeps them, from the newest
/// PostgreSQL version that has the tool (a newer pg_dump reads older servers, not the
/// reverse).
pub fn tool(name: &str) -> String {
    if Command::new(name).arg("--version").output().is_ok() {
        return name.to_owned();
    }
    let root = Path::new("/usr/lib/postgresql");
    let versions: Vec<String> = std::fs::read_dir(root)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|v| root.join(v).join("bin").join(name).exists())
                .collect()
        })
        .unwrap_or_default();
    newest_version(versions.iter().map(String::as_str)).map_or(name.to_owned(), |v| {
        root.join(v).join("bin").join(name).display().to_string()
    })
}

/// The highest of `names` read as dotted version numbers (`9.6` < `10` < `17`); names
/// that are not numbers are skipped.
fn newest_version<'a>(names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    names
        .filter_map(|n| {
            let parts: Option<Vec<u32>> = n.split('.').map(|p| p.parse().ok()).collect();
            Some((parts?, n))
        })
        .max()
        .map(|(_, n)| n)
}

/// What `migrate test` found wrong with one migration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RoundTripFailure {
    /// The migration folder.
    pub folder: String,
    /// What went wrong, with the schema diff when down.sql left something behind.
    pub problem: String,
}

/// Every migration up; each one down and up again, checking the schema after each down equals
/// the schema before its up, and after the second up equals the first. Then every foreign
/// key must have an index that starts with its columns.
/// When `stop` resolves first (Ctrl-C), the work stops and the scratch database is dropped.
pub async fn round_trip(
    migrator: &Migrator,
    url: &DatabaseUrl,
    progress: &mut dyn FnMut(&str),
    stop: impl Future<Output = ()>,
) -> Result<Vec<RoundTripFailure>> {
    let scratch = Scratch::create(url).await?;
    let on = scratch.url.clone();
    scratch
        .run(round_trip_on(migrator, &on, progress), stop)
        .await
}

async fn round_trip_on(
    migrator: &Migrator,
    url: &DatabaseUrl,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<RoundTripFailure>> {
    let mut failures = Vec::new();
    let mut fail = |folder: &str, problem: String| {
        failures.push(RoundTripFailure {
            folder: folder.to_owned(),
            problem,
        });
    };
    for m in migrator.migrations() {
        let before = dump_schema(url)?;
        if let Err(e) = migrator.upgrade(url, Target::Steps(1)).await {
            fail(&m.folder, e.to_string());
            return Ok(failures);
        }
        let after_up = dump_schema(url)?;
        if m.down.is_none() {
            progress(&format!("{}: up ok, no down.sql", m.folder));
            continue;
        }
        if let Err(e) = migrator.downgrade(url, Target::Steps(1)).await {
            fail(&m.folder, e.to_string());
            return Ok(failures);
        }
        let after_down = dump_schema(url)?;
        if after_down != before {
            let diff = diff(&before, &after_down);
            fail(
                &m.folder,
                format!("down.sql does not restore the schema:\n{diff}"),
            );
            // Applying up.sql again on top of the leftovers would only fail: stop here.
            return Ok(failures);
        }
        if let Err(e) = migrator.upgrade(url, Target::Steps(1)).await {
            fail(&m.folder, format!("up.sql fails after down.sql: {e}"));
            return Ok(failures);
        }
        let again = dump_schema(url)?;
        if again != after_up {
            let diff = diff(&after_up, &again);
            fail(
                &m.folder,
                format!("up.sql after down.sql gives another schema:\n{diff}"),
            );
        }
        progress(&format!("{}: up, down, up ok", m.folder));
    }
    let mut conn = db::connect(url).await?;
    survival_pass(migrator, url, &mut conn, &mut fail, progress).await?;
    for fk in unindexed_foreign_keys(&mut conn).await? {
        fail(
            "(head)",
            format!("foreign key {fk} has no index starting with its columns"),
        );
    }
    Ok(failures)
}

#[derive(diesel::QueryableByName)]
struct Expect {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    ok: bool,
}

/// From an empty schema again: each migration up, then its `test_data.sql`; at head every
/// `test_expect.sql` must return `true` (`SELECT ... AS ok`): data written early survives.
async fn survival_pass(
    migrator: &Migrator,
    url: &DatabaseUrl,
    conn: &mut AsyncPgConnection,
    fail: &mut dyn FnMut(&str, String),
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    use diesel_async::SimpleAsyncConnection;
    if migrator
        .migrations()
        .iter()
        .all(|m| m.test_data.is_none() && m.test_expect.is_none())
    {
        return Ok(());
    }
    migrator.downgrade(url, Target::Base).await?;
    for m in migrator.migrations() {
        migrator.upgrade(url, Target::Steps(1)).await?;
        let Some(data) = &m.test_data else { continue };
        if let Err(e) = conn.batch_execute(data).await {
            fail(&m.folder, format!("test_data.sql failed: {e}"));
            return Ok(());
        }
    }
    for m in migrator.migrations() {
        let Some(expect) = &m.test_expect else {
            continue;
        };
        match diesel::sql_query(expect.as_str())
            .get_result::<Expect>(conn)
            .await
        {
            Ok(Expect { ok: true }) => progress(&format!("{}: data survived to head", m.folder)),
            Ok(Expect { ok: false }) => {
                fail(&m.folder, "test_expect.sql returned false at head".into())
            }
            Err(e) => fail(&m.folder, format!("test_expect.sql failed at head: {e}")),
        }
    }
    Ok(())
}

/// Lines only in `a` (`-`) and only in `b` (`+`): enough to see what down.sql missed.
fn diff(a: &str, b: &str) -> String {
    let only = |x: &str, y: &str, sign: char| {
        x.lines()
            .filter(|l| !l.trim().is_empty() && !y.lines().any(|m| m == *l))
            .map(|l| format!("{sign} {l}"))
            .collect::<Vec<_>>()
    };
    let mut lines = only(a, b, '-');
    lines.extend(only(b, a, '+'));
    lines.join("\n")
}

#[derive(diesel::QueryableByName)]
struct Unindexed {
    #[diesel(sql_type = Text)]
    name: String,
}

/// Foreign keys (as `table.constraint`) whose columns do not lead any index.
pub async fn unindexed_foreign_keys(conn: &mut AsyncPgConnection) -> Result<Vec<String>> {
    let rows: Vec<Unindexed> = diesel::sql_query(
        "SELECT c.conrelid::regclass::text || '.' || c.conname AS name \
         FROM pg_constraint c \
         WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace \
         AND NOT EXISTS ( \
             SELECT 1 FROM pg_index i WHERE i.indrelid = c.conrelid \
             AND (i.indkey::int2[])[0:array_length(c.conkey, 1) - 1] @> c.conkey \
             AND (i.indkey::int2[])[0:array_length(c.conkey, 1) - 1] <@ c.conkey) \
         ORDER BY 1",
    )
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.name).collect())
}

/// Applies every migration to a scratch database and compares `diesel print-schema` there
/// with `src/schema.rs`; returns the differing lines (empty when equal). When `stop`
/// resolves first (Ctrl-C), the work stops and the scratch database is dropped.
pub async fn schema_drift(
    migrator: &Migrator,
    url: &DatabaseUrl,
    project: &Path,
    stop: impl Future<Output = ()>,
) -> Result<String> {
    let scratch = Scratch::create(url).await?;
    let on = scratch.url.clone();
    let work = async {
        migrator.upgrade(&on, Target::Head).await?;
        let printed = print_schema(&on, project)?;
        let committed = std::fs::read_to_string(project.join("src/schema.rs"))
            .map_err(|e| Error::Migration(format!("src/schema.rs: {e}")))?;
        Ok(diff(&committed, &printed))
    };
    scratch.run(work, stop).await
}

/// `diesel print-schema` of the database at `url`, as the project's diesel.toml configures
/// it: what `src/schema.rs` should hold for that database.
pub fn print_schema(url: &DatabaseUrl, project: &Path) -> Result<String> {
    let (bare, env) = db::tool_connection(url)?;
    let out = Command::new("diesel")
        .envs(env)
        .args(["print-schema", "--database-url", &bare])
        .current_dir(project)
        .output()
        .map_err(|_| {
            Error::Migration(
                "this needs diesel_cli: cargo install diesel_cli --no-default-features --features postgres"
                    .into(),
            )
        })?;
    if !out.status.success() {
        return Err(Error::Migration(format!(
            "diesel print-schema failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::{diff, newest_version, normalize};

    #[test]
    fn the_newest_client_tools_are_chosen_by_number_not_text() {
        let pick = |v: &[&'static str]| newest_version(v.iter().copied());
        assert_eq!(pick(&["9.6", "17", "15", "10"]), Some("17"));
        assert_eq!(pick(&["9.6", "common", "8.4", ""]), Some("9.6"));
        assert_eq!(pick(&["13", "13.1"]), Some("13.1"));
        assert_eq!(pick(&["notes", "x.1"]), None);
    }

    #[test]
    fn dumps_compare_without_comments_or_column_order() {
        let a =
            "-- Dumped by pg_dump 17\n\\restrict abc\nCREATE TABLE t (\n    a int,\n    b text\n);";
        let b = "-- Dumped by pg_dump 16\nCREATE TABLE t (\n    b text,\n    a int\n);\n\\unrestrict abc";
        assert_eq!(normalize(a), normalize(b));
        assert_eq!(normalize(a), "CREATE TABLE t (\n    a int\n    b text\n);");
    }

    #[test]
    fn a_diff_shows_lines_only_on_either_side() {
        let before = "CREATE TABLE t (\n    a int\n);\n\n";
        let after = "CREATE TABLE t (\n    a int\n    b int\n);";
        assert_eq!(diff(before, after), "+     b int");
        assert_eq!(diff(after, before), "-     b int");
        assert_eq!(diff(before, before), "");
    }
}
