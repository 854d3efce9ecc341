//! Where a database stands: diesel's version table, our checksums beside it, and what the
//! two say together ([`Status`], [`State`], [`Problem`]). Reading never creates anything:
//! `current` and `history` must work for a role that may not create tables.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::prelude::*;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::Text;
use serde::Serialize;

use super::{Conn, Migrator, exists};
use crate::migrations::Migration;
use crate::{Error, Result};

/// Creates the migration history tables if missing: diesel_cli's version table and our
/// checksums beside it. Idempotent.
pub const HISTORY_DDL: &str = "
CREATE TABLE IF NOT EXISTS __diesel_schema_migrations (
    version VARCHAR(50) PRIMARY KEY NOT NULL,
    run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE SCHEMA IF NOT EXISTS migrate;
CREATE TABLE IF NOT EXISTS migrate.checksums (
    version VARCHAR(50) PRIMARY KEY,
    folder TEXT NOT NULL,
    checksum TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('applied', 'dirty')),
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    duration_ms BIGINT
);";

diesel::table! {
    /// diesel's version table, read for `run_on` (the harness only reports versions).
    #[sql_name = "__diesel_schema_migrations"]
    diesel_history (version) {
        version -> VarChar,
        run_on -> Timestamp,
    }
}

diesel::table! {
    /// Our side table, `migrate.checksums`: what diesel does not record.
    #[sql_name = "checksums"]
    migrate.sums (version) {
        version -> VarChar,
        folder -> Text,
        checksum -> Text,
        state -> Text,
        applied_at -> Timestamptz,
        duration_ms -> Nullable<BigInt>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(diesel_history, sums);

/// What a checksum row records of its migration: the `state` column, whose CHECK admits
/// these two words. Read and written through Diesel as that text, compared as this enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub(super) enum Mark {
    /// It ran to the end; its checksum is of the files that ran.
    Applied,
    /// A non-transactional migration started and has not finished (or failed part-way).
    Dirty,
}

impl Mark {
    /// The word stored in `migrate.checksums.state`.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Mark::Applied => "applied",
            Mark::Dirty => "dirty",
        }
    }
}

impl std::str::FromStr for Mark {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "applied" => Ok(Mark::Applied),
            "dirty" => Ok(Mark::Dirty),
            other => Err(format!(
                "migrate.checksums.state {other:?}: not applied or dirty"
            )),
        }
    }
}

impl FromSql<Text, Pg> for Mark {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        Ok(std::str::from_utf8(value.as_bytes())?.parse()?)
    }
}

impl ToSql<Text, Pg> for Mark {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        std::io::Write::write_all(out, self.as_str().as_bytes())?;
        Ok(IsNull::No)
    }
}

/// How an applied migration stands against its files; prints (and serializes) as its word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Its files are what ran.
    Ok,
    /// Its files differ from what ran.
    Changed,
    /// It has no folder any more.
    Missing,
    /// Applied by another tool: no checksum says what ran.
    Unrecorded,
    /// A non-transactional migration that failed part-way.
    Dirty,
}

impl State {
    /// Every state, for parsing.
    const ALL: [State; 5] = [
        State::Ok,
        State::Changed,
        State::Missing,
        State::Unrecorded,
        State::Dirty,
    ];

    /// The word `history` prints: `ok`, `changed`, `missing`, `unrecorded` or `dirty`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Changed => "changed",
            State::Missing => "missing",
            State::Unrecorded => "unrecorded",
            State::Dirty => "dirty",
        }
    }

    /// An applied version's state, from its migration (`None`: no folder) and its checksum
    /// row (`None`: none recorded). A dirty mark wins: the schema is at no version.
    fn of(file: Option<&Migration>, sum: Option<&Sum>) -> State {
        match (file, sum) {
            (_, Some(s)) if s.mark == Mark::Dirty => State::Dirty,
            (None, _) => State::Missing,
            (Some(_), None) => State::Unrecorded,
            (Some(m), Some(s)) if m.checksum() == s.checksum => State::Ok,
            (Some(_), Some(_)) => State::Changed,
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for State {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        (State::ALL.into_iter())
            .find(|s| s.as_str() == text)
            .ok_or_else(|| Error::Migration(format!("{text:?} is not a migration state")))
    }
}

/// One applied migration, as the database records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Applied {
    /// Diesel's version.
    pub version: String,
    /// The folder name, when known (recorded by us, or found among the files).
    pub folder: Option<String>,
    /// When diesel's table says it ran (UTC).
    pub run_on: NaiveDateTime,
    /// How long it took, when this runner applied it.
    pub duration_ms: Option<i64>,
    /// How it stands against its files.
    pub state: State,
}

/// What `verify` finds wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// An applied migration's files changed since it ran.
    #[error("{folder}: changed after it was applied")]
    Changed {
        /// The migration's folder name.
        folder: String,
    },
    /// An applied migration has no folder any more.
    #[error("{version}: applied, but its folder is gone")]
    Missing {
        /// The version recorded in the history table.
        version: String,
    },
    /// A pending migration sorts before the newest applied one.
    #[error("{folder}: pending, but older than the applied {newest_applied}")]
    OutOfOrder {
        /// The pending migration's folder name.
        folder: String,
        /// The newest applied version, which sorts after it.
        newest_applied: String,
    },
    /// An applied migration has no checksum row (applied by another tool, or the row was
    /// deleted): nothing says its files are what ran.
    #[error("{version}: applied, but no checksum was recorded (`migrate stamp` records one)")]
    Unrecorded {
        /// The version recorded in the history table.
        version: String,
    },
    /// A checksum row whose version is not applied: the two tables disagree.
    #[error("{version}: has a checksum, but is not applied (`migrate stamp` clears it)")]
    Orphaned {
        /// The version of the checksum row.
        version: String,
    },
    /// A non-transactional migration failed part-way: fix the database, then `stamp`.
    #[error("{folder}: failed part-way outside a transaction (dirty)")]
    Dirty {
        /// The migration's folder name.
        folder: String,
    },
}

/// Where a database stands: what it has applied, what is left, what failed part-way.
#[derive(Debug, Clone)]
pub struct Status {
    /// Applied migrations, oldest first, each with its checksum state.
    pub applied: Vec<Applied>,
    /// Migrations not applied yet, in version order.
    pub pending: Vec<Migration>,
    /// Folders of migrations that failed part-way outside a transaction.
    pub dirty: Vec<String>,
    /// Versions with an `applied` checksum row but no row in diesel's history table.
    pub orphaned: Vec<String>,
}

impl Status {
    /// The newest applied version, if any.
    pub fn newest(&self) -> Option<&str> {
        self.applied.last().map(|a| a.version.as_str())
    }

    /// Everything `verify` reports: changed, missing, out-of-order and dirty migrations.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems: Vec<Problem> = self
            .applied
            .iter()
            .filter_map(|a| {
                let folder = a.folder.clone().unwrap_or_else(|| a.version.clone());
                let version = a.version.clone();
                match a.state {
                    State::Changed => Some(Problem::Changed { folder }),
                    State::Missing => Some(Problem::Missing { version }),
                    State::Unrecorded => Some(Problem::Unrecorded { version }),
                    State::Ok | State::Dirty => None,
                }
            })
            .collect();
        problems.extend(self.dirty.iter().map(|folder| Problem::Dirty {
            folder: folder.clone(),
        }));
        problems.extend(self.orphaned.iter().map(|version| Problem::Orphaned {
            version: version.clone(),
        }));
        if let Some(newest) = self.newest() {
            problems.extend(
                self.pending
                    .iter()
                    .filter(|m| m.version.as_str() < newest)
                    .map(|m| Problem::OutOfOrder {
                        folder: m.folder.clone(),
                        newest_applied: newest.to_owned(),
                    }),
            );
        }
        problems
    }

    /// The status of `all` migrations, from diesel's rows (version, run_on; oldest first)
    /// and our checksum rows by version.
    fn of(
        all: &[Migration],
        rows: Vec<(String, NaiveDateTime)>,
        sums: BTreeMap<String, Sum>,
    ) -> Status {
        let applied: Vec<Applied> = rows
            .into_iter()
            .map(|(version, run_on)| {
                let file = all.iter().find(|m| m.version == version);
                let sum = sums.get(&version);
                Applied {
                    folder: sum
                        .map(|s| s.folder.clone())
                        .or(file.map(|m| m.folder.clone())),
                    duration_ms: sum.and_then(|s| s.duration_ms),
                    state: State::of(file, sum),
                    version,
                    run_on,
                }
            })
            .collect();
        let pending = (all.iter())
            .filter(|m| !applied.iter().any(|a| a.version == m.version))
            .cloned()
            .collect();
        // A dirty row has no history row by design (the migration never finished).
        let orphaned = (sums.iter())
            .filter(|(v, s)| s.mark != Mark::Dirty && !applied.iter().any(|a| &a.version == *v))
            .map(|(v, _)| v.clone())
            .collect();
        let dirty = (sums.into_values())
            .filter(|s| s.mark == Mark::Dirty)
            .map(|s| s.folder)
            .collect();
        Status {
            applied,
            pending,
            dirty,
            orphaned,
        }
    }
}

/// A row of `migrate.checksums`, less its version and time.
#[derive(Debug, Clone, Queryable)]
struct Sum {
    folder: String,
    checksum: String,
    mark: Mark,
    duration_ms: Option<i64>,
}

impl Migrator {
    /// Reads where the database on `conn` stands, creating nothing.
    pub(super) fn status_on(&self, conn: &mut Conn) -> Result<Status> {
        let rows = if exists(conn, "__diesel_schema_migrations")? {
            diesel_history::table
                .select((diesel_history::version, diesel_history::run_on))
                .order(diesel_history::version)
                .load(conn)?
        } else {
            Vec::new()
        };
        let sums: BTreeMap<String, Sum> = if exists(conn, "migrate.checksums")? {
            use self::sums::dsl::*;
            sums.select((version, (folder, checksum, state, duration_ms)))
                .load(conn)?
                .into_iter()
                .collect()
        } else {
            BTreeMap::new()
        };
        Ok(Status::of(&self.migrations, rows, sums))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migration(version: &str, up: &str) -> Migration {
        Migration {
            folder: format!("{version}_m"),
            up: up.to_owned(),
            ..Migration::unknown(version)
        }
    }

    fn sum(m: &Migration, checksum: &str, mark: Mark) -> (String, Sum) {
        let checksum = checksum.to_owned();
        let folder = m.folder.clone();
        let row = Sum {
            folder,
            checksum,
            mark,
            duration_ms: Some(7),
        };
        (m.version.clone(), row)
    }

    #[test]
    fn states_and_marks_read_back_as_the_words_they_print() {
        for state in State::ALL {
            assert_eq!(state.to_string().parse::<State>().unwrap(), state);
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{state}\""));
        }
        for mark in [Mark::Applied, Mark::Dirty] {
            assert_eq!(mark.as_str().parse::<Mark>(), Ok(mark));
        }
        assert!("OK".parse::<State>().is_err());
        assert!("ok".parse::<Mark>().is_err());
    }

    #[test]
    fn each_applied_migration_is_judged_against_its_files() {
        let all: Vec<Migration> = ["1", "2", "3", "4"]
            .iter()
            .map(|v| migration(v, &format!("SELECT {v};")))
            .collect();
        let at = NaiveDateTime::default();
        let rows = ["1", "2", "3", "9"].map(|v| (v.to_owned(), at)).to_vec();
        let sums = BTreeMap::from([
            sum(&all[0], &all[0].checksum(), Mark::Applied),
            sum(&all[1], "edited since", Mark::Applied),
            sum(&all[3], &all[3].checksum(), Mark::Dirty),
            sum(&migration("8", ""), "gone", Mark::Applied),
        ]);
        let status = Status::of(&all, rows, sums);
        let states: Vec<State> = status.applied.iter().map(|a| a.state).collect();
        use State::*;
        assert_eq!(states, [Ok, Changed, Unrecorded, Missing]);
        assert_eq!(status.applied[0].duration_ms, Some(7));
        assert_eq!(status.applied[2].folder.as_deref(), Some("3_m"));
        assert_eq!(status.applied[3].folder, None);
        assert_eq!(status.pending, [all[3].clone()]);
        assert_eq!(status.dirty, ["4_m"]);
        assert_eq!(status.orphaned, ["8"]);
        assert_eq!(status.newest(), Some("9"));
    }

    #[test]
    fn a_dirty_mark_wins_over_the_checksum() {
        let m = migration("1", "SELECT 1;");
        let (_, row) = sum(&m, &m.checksum(), Mark::Dirty);
        assert_eq!(State::of(Some(&m), Some(&row)), State::Dirty);
        assert_eq!(State::of(None, Some(&row)), State::Dirty);
    }

    #[test]
    fn problems_name_what_verify_reports() {
        let all = vec![migration("1", ""), migration("3", ""), migration("5", "")];
        let at = NaiveDateTime::default();
        let rows = ["3", "4"].map(|v| (v.to_owned(), at)).to_vec();
        let sums = BTreeMap::from([sum(&all[1], "other", Mark::Applied)]);
        let problems: Vec<String> = (Status::of(&all, rows, sums).problems().iter())
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            problems,
            [
                "3_m: changed after it was applied",
                "4: applied, but its folder is gone",
                "1_m: pending, but older than the applied 4",
            ]
        );
    }
}
