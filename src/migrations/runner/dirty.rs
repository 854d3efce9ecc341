//! A migration outside a transaction that failed part-way leaves the schema at no version:
//! the refusal to go on while one is dirty, and the repair each failure prints. A failed
//! `CREATE INDEX CONCURRENTLY` leaves an INVALID index behind, which the migration cannot
//! create again until it is dropped, so both name those.

use diesel::prelude::*;
use diesel::sql_types::Text;

use super::{Conn, Direction, Status};
use crate::db::{self, DatabaseUrl};
use crate::migrations::Migration;
use crate::{Error, Result};

/// Refuses to go on while a migration is marked dirty, as `current --check` does.
/// The INVALID indexes are named: a run killed during `CREATE INDEX CONCURRENTLY` never
/// printed its repair.
pub(super) fn refuse_dirty(conn: &mut Conn, status: &Status) -> Result<()> {
    let Some(folder) = status.dirty.first() else {
        return Ok(());
    };
    Err(dirty_refusal(folder, &invalid_index_names(conn)?))
}

/// The error of a non-transactional migration `m` that failed part-way going `way`, with
/// what to do. `invalid_before` were INVALID before it ran: not its to drop. Asked on a
/// fresh connection when the failure broke this one.
pub(super) fn left_dirty(
    conn: &mut Conn,
    url: &DatabaseUrl,
    all: &[Migration],
    (m, way): (&Migration, Direction),
    failure: Error,
    invalid_before: &[String],
) -> Error {
    let Error::Migration(why) = failure else {
        return failure;
    };
    let invalid = invalid_index_names(conn).or_else(|_| {
        let url = url.clone();
        tokio::runtime::Handle::current().block_on(async move {
            let mut conn = db::connect(&url).await?;
            let rows = diesel_async::RunQueryDsl::load(invalid_indexes(), &mut conn).await?;
            Ok::<_, Error>(names(rows))
        })
    });
    let left: Vec<String> = (invalid.unwrap_or_default().into_iter())
        .filter(|name| !invalid_before.contains(name))
        .collect();
    let stamp = stamp_advice(all, m, way);
    Error::Migration(repair(&why, &m.folder, &left, &stamp))
}

/// The names of the INVALID indexes now, schema-qualified and quoted as `regclass` prints.
pub(super) fn invalid_index_names(conn: &mut Conn) -> Result<Vec<String>> {
    Ok(names(invalid_indexes().load(conn)?))
}

/// An INVALID index (left by a failed `CREATE INDEX CONCURRENTLY`).
#[derive(QueryableByName)]
struct Invalid {
    #[diesel(sql_type = Text)]
    name: String,
}

fn names(rows: Vec<Invalid>) -> Vec<String> {
    rows.into_iter().map(|i| i.name).collect()
}

/// The query for [`Invalid`] indexes; pg_index has no Diesel schema here.
fn invalid_indexes() -> diesel::query_builder::SqlQuery {
    diesel::sql_query(
        "SELECT indexrelid::regclass::text AS name FROM pg_index WHERE NOT indisvalid ORDER BY 1",
    )
}

/// What drops an INVALID index without blocking writes.
fn drop_invalid(name: &str) -> String {
    format!("DROP INDEX CONCURRENTLY IF EXISTS {name};")
}

/// The refusal to run while `folder` is dirty, with a drop for each INVALID index.
fn dirty_refusal(folder: &str, invalid: &[String]) -> Error {
    let drops: Vec<String> = (invalid.iter())
        .map(|name| format!("\n  {} -- INVALID", drop_invalid(name)))
        .collect();
    Error::Migration(format!(
        "{folder} failed part-way outside a transaction: repair the schema by hand \
         (`migrate verify` says what is dirty), then `migrate stamp <version>` to record \
         where it stands{}",
        drops.concat()
    ))
}

/// `why` a step failed, then its repair: drop the INVALID indexes it `left`, deal with
/// the statements that ran, `stamp`.
fn repair(why: &str, folder: &str, left: &[String], stamp: &str) -> String {
    let mut steps: Vec<String> = left.iter().map(|name| drop_invalid(name)).collect();
    steps.push(format!(
        "statements before the one that failed ran and stay: undo them, or make them \
         idempotent (IF NOT EXISTS), then {stamp}"
    ));
    format!(
        "{why}\n{folder} is marked dirty; to repair:\n  {}",
        steps.join("\n  ")
    )
}

/// What to stamp once `m`, failed going `way`, is repaired: an upgrade goes back to the
/// version before it; a downgrade may have got as far as removing its version.
fn stamp_advice(all: &[Migration], m: &Migration, way: Direction) -> String {
    let previous = (all.iter().rev())
        .find(|p| p.version < m.version)
        .map_or("base", |p| p.version.as_str());
    match way {
        Direction::Up => format!("migrate stamp {previous}, then migrate upgrade again"),
        Direction::Down => format!(
            "migrate stamp {} if it is still applied, else migrate stamp {previous}",
            m.version
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dirty_refusal_names_each_invalid_index_to_drop() {
        let invalid = ["public.a_idx".to_owned(), "\"Odd\".b_idx".to_owned()];
        let why = dirty_refusal("2_cic", &invalid).to_string();
        assert!(
            why.starts_with("migration failed: 2_cic failed part-way outside"),
            "{why}"
        );
        assert!(why.ends_with(
            "where it stands\n  DROP INDEX CONCURRENTLY IF EXISTS public.a_idx; -- INVALID\
             \n  DROP INDEX CONCURRENTLY IF EXISTS \"Odd\".b_idx; -- INVALID"
        ));
        assert!(
            dirty_refusal("2_cic", &[])
                .to_string()
                .ends_with("where it stands")
        );
    }

    #[test]
    fn a_repair_drops_what_the_step_left_then_stamps() {
        let left = ["public.c_idx".to_owned()];
        assert_eq!(
            repair(
                "m/up.sql, statement 2 (line 3): boom",
                "2_cic",
                &left,
                "STAMP"
            ),
            "m/up.sql, statement 2 (line 3): boom\n2_cic is marked dirty; to repair:\
             \n  DROP INDEX CONCURRENTLY IF EXISTS public.c_idx;\
             \n  statements before the one that failed ran and stay: undo them, or make \
             them idempotent (IF NOT EXISTS), then STAMP"
        );
    }

    #[test]
    fn the_stamp_advised_is_the_version_before_or_base() {
        let all: Vec<Migration> = ["1", "2", "3"].map(Migration::unknown).to_vec();
        let advice = |i: usize, way| stamp_advice(&all, &all[i], way);
        assert_eq!(
            advice(1, Direction::Up),
            "migrate stamp 1, then migrate upgrade again"
        );
        assert_eq!(
            advice(0, Direction::Up),
            "migrate stamp base, then migrate upgrade again"
        );
        assert_eq!(
            advice(2, Direction::Down),
            "migrate stamp 3 if it is still applied, else migrate stamp 2"
        );
    }
}
