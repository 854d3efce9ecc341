//! Bulk writes: all-or-nothing, past the 65,535-parameter limit, for any model with BulkRow.

use crate::support::{TestDb, count, user};
use app::Error;
use app::bulk::{self, OnConflict};
use app::models::*;
use app::schema::{tasks, team_members};
use diesel_async::AsyncPgConnection;

/// `n` users via the bulk path; returns their ids.
async fn users(conn: &mut AsyncPgConnection, n: usize) -> Vec<i64> {
    let rows: Vec<UserRow> = (0..n)
        .map(|i| UserRow {
            email: Email::parse(&format!("bulk{i}@example.com")).unwrap(),
            display_name: format!("Bulk {i}"),
        })
        .collect();
    assert_eq!(bulk::insert(conn, &rows).await.unwrap(), n);
    User::all(conn)
        .await
        .unwrap()
        .iter()
        .map(|u| u.id)
        .collect()
}

fn tasks<'a>(owners: &[i64], title: &'a Title, n: usize) -> Vec<NewTask<'a>> {
    (0..n)
        .map(|i| NewTask::new(owners[i % owners.len()], title))
        .collect()
}

#[tokio::test]
async fn inserts_100k_rows_in_one_call() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owners = users(&mut conn, 1_000).await;
    let title = Title::parse("Bulk task").unwrap();
    let rows = tasks(&owners, &title, 100_000);
    assert_eq!(bulk::insert(&mut conn, &rows).await.unwrap(), 100_000);
    assert_eq!(count(&mut conn, "tasks").await, 100_000);
    let first = User::find(&conn, owners[0]).await.unwrap();
    let sample = Task::owned_by(&conn, &first).await.unwrap();
    assert_eq!(sample.len(), 100);
    assert!(
        sample
            .iter()
            .all(|t| t.status == TaskStatus::Todo && t.priority == Priority::NORMAL)
    );
}

#[tokio::test]
async fn one_bad_row_in_100k_writes_nothing() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owners = users(&mut conn, 100).await;
    let title = Title::parse("Bulk task").unwrap();
    let mut rows = tasks(&owners, &title, 100_000);
    rows[50_000].owner_id = -1; // no such user, in a later chunk than the first
    let err = bulk::insert(&mut conn, &rows).await.unwrap_err();
    assert!(
        matches!(&err, Error::ForeignKey { constraint } if constraint == "tasks_owner_id_fkey"),
        "{err:?}"
    );
    assert_eq!(
        count(&mut conn, "tasks").await,
        0,
        "not even the first chunk"
    );

    let dup = vec![
        UserRow {
            email: Email::parse("new@example.com").unwrap(),
            display_name: "New".into(),
        },
        UserRow {
            email: Email::parse("bulk5@example.com").unwrap(),
            display_name: "Dup".into(),
        },
    ];
    let err = bulk::insert(&mut conn, &dup).await.unwrap_err();
    assert!(matches!(&err, Error::Conflict { constraint } if constraint == "users_email_key"));
    assert_eq!(count(&mut conn, "users").await, 100);
}

#[tokio::test]
async fn diesel_batched_insert_is_chunked_past_65535_parameters() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owner = user(&mut conn, "owner@example.com").await;
    let title = Title::parse("Batched").unwrap();
    // 20,000 rows x 9 columns = 180,000 parameters: three statements, one transaction.
    let rows = tasks(&[owner.id], &title, 20_000);
    assert_eq!(
        Task::insert_batched(&mut conn, &rows).await.unwrap(),
        20_000
    );
    assert_eq!(count(&mut conn, "tasks").await, 20_000);

    let mut bad = tasks(&[owner.id], &title, 20_000);
    bad[19_999].owner_id = -1; // in the last chunk
    assert!(matches!(
        Task::insert_batched(&mut conn, &bad).await,
        Err(Error::ForeignKey { .. })
    ));
    assert_eq!(
        count(&mut conn, "tasks").await,
        20_000,
        "the earlier chunks rolled back"
    );
}

#[tokio::test]
async fn upsert_updates_or_ignores_existing_keys() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let ids = users(&mut conn, 3).await;
    let team = Team::create(&conn, &NewTeam { name: "Core" })
        .await
        .unwrap();
    let member = |user_id, role| Membership {
        team_id: team.id,
        user_id,
        role,
    };

    bulk::insert(
        &mut conn,
        &[member(ids[0], Role::Member), member(ids[1], Role::Member)],
    )
    .await
    .unwrap();
    let rows = [member(ids[0], Role::Admin), member(ids[2], Role::Member)];
    let ignored = bulk::upsert(
        &mut conn,
        &rows,
        (team_members::team_id, team_members::user_id),
        OnConflict::Ignore,
    )
    .await
    .unwrap();
    assert_eq!(ignored, 1, "only the new member is written");
    let roles = |members: Vec<(User, TeamMember)>| {
        members
            .into_iter()
            .map(|(u, m)| (u.id, m.role))
            .collect::<Vec<_>>()
    };
    let after = roles(Team::members(&conn, team.id).await.unwrap());
    assert!(after.contains(&(ids[0], Role::Member)), "{after:?}");

    let updated = bulk::upsert(
        &mut conn,
        &rows,
        (team_members::team_id, team_members::user_id),
        OnConflict::update((team_members::role,)),
    )
    .await
    .unwrap();
    assert_eq!(updated, 2);
    let after = roles(Team::members(&conn, team.id).await.unwrap());
    assert!(
        after.contains(&(ids[0], Role::Admin)) && after.len() == 3,
        "{after:?}"
    );
}

#[tokio::test]
async fn update_by_key_delete_and_soft_delete_by_ids() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owners = users(&mut conn, 10).await;
    let title = Title::parse("Bulk").unwrap();
    bulk::insert(&mut conn, &tasks(&owners, &title, 1_000))
        .await
        .unwrap();
    let all: Vec<i64> = {
        let owner = User::find(&conn, owners[0]).await.unwrap();
        let mut ids: Vec<i64> = Task::owned_by(&conn, &owner)
            .await
            .unwrap()
            .iter()
            .map(|t| t.id)
            .collect();
        ids.sort();
        ids
    };
    let changes: Vec<_> = all
        .iter()
        .map(|&id| TaskStatusUpdate {
            id,
            status: TaskStatus::Done,
            priority: Priority::new(1).unwrap(),
        })
        .collect();
    assert_eq!(
        bulk::update_by_key(&mut conn, &changes, (tasks::id,))
            .await
            .unwrap(),
        all.len()
    );
    let t = Task::find(&conn, all[0]).await.unwrap();
    assert_eq!((t.status, t.priority.get()), (TaskStatus::Done, 1));
    assert_eq!(t.title, title, "columns not in the update are untouched");

    assert_eq!(
        bulk::soft_delete_by_ids(&conn, tasks::id, tasks::deleted_at, &all[..50])
            .await
            .unwrap(),
        50
    );
    assert_eq!(
        bulk::soft_delete_by_ids(&conn, tasks::id, tasks::deleted_at, &all[..50])
            .await
            .unwrap(),
        0,
        "already deleted"
    );
    assert!(matches!(
        Task::find(&conn, all[0]).await,
        Err(Error::NotFound)
    ));
    assert_eq!(
        bulk::delete_by_ids(&conn, tasks::id, &all).await.unwrap(),
        all.len()
    );
    assert_eq!(count(&mut conn, "tasks").await, 1_000 - all.len() as i64);
}

#[tokio::test]
async fn copy_inserts_all_or_nothing_with_typed_errors() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owners = users(&mut conn, 100).await;
    let title = Title::parse("Copied").unwrap();
    let mut rows = tasks(&owners, &title, 100_000);
    rows[99_999].owner_id = -1;
    let err = bulk::copy_insert(&db.url, &rows).await.unwrap_err();
    assert!(
        matches!(&err, Error::ForeignKey { constraint } if constraint == "tasks_owner_id_fkey"),
        "{err:?}"
    );
    assert_eq!(count(&mut conn, "tasks").await, 0);
    rows[99_999].owner_id = owners[0];
    rows[7].status = Some(TaskStatus::Done);
    assert_eq!(bulk::copy_insert(&db.url, &rows).await.unwrap(), 100_000);
    assert_eq!(count(&mut conn, "tasks").await, 100_000);
    let done: i64 = diesel_async::RunQueryDsl::get_result(
        diesel::dsl::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "(SELECT count(*) FROM tasks WHERE status = 'done')",
        )),
        &mut conn,
    )
    .await
    .unwrap();
    assert_eq!(done, 1, "enum values go through COPY as labels");
}

/// Rows from an iterator go in batch by batch, yet as one transaction: a bad row in the
/// last batch leaves nothing from the earlier ones.
#[tokio::test]
async fn streamed_copy_is_all_or_nothing_across_batches() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owners = users(&mut conn, 10).await;
    let title = Title::parse("Streamed").unwrap();
    let n = 2 * bulk::COPY_BATCH_ROWS + 7;
    let rows = |bad: Option<usize>| {
        let (owners, title) = (&owners, &title);
        (0..n).map(move |i| NewTask {
            owner_id: if Some(i) == bad {
                -1
            } else {
                owners[i % owners.len()]
            },
            ..NewTask::new(owners[i % owners.len()], title)
        })
    };
    let err = bulk::copy_insert_iter(&db.url, rows(Some(n - 1)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ForeignKey { .. }), "{err:?}");
    assert_eq!(count(&mut conn, "tasks").await, 0);
    let stream = futures_util::stream::iter(rows(None));
    assert_eq!(bulk::copy_insert_stream(&db.url, stream).await.unwrap(), n);
    assert_eq!(count(&mut conn, "tasks").await, n as i64);
}

/// `CopyIn` commits only on `finish`: dropped unfinished, or refused for a batch laid out
/// unlike the first, it leaves nothing.
#[tokio::test]
async fn copy_in_writes_nothing_until_finished() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owners = users(&mut conn, 3).await;
    let title = Title::parse("Batched").unwrap();
    let batch = tasks(&owners, &title, 500);

    let mut copy = bulk::CopyIn::open(&db.url).await.unwrap();
    copy.write(&batch).await.unwrap();
    drop(copy);
    assert_eq!(count(&mut conn, "tasks").await, 0);

    let mut copy = bulk::CopyIn::open(&db.url).await.unwrap();
    copy.write(&batch).await.unwrap();
    let other = [TaskStatusUpdate {
        id: 1,
        status: TaskStatus::Done,
        priority: Priority::NORMAL,
    }];
    let err = copy.write(&other).await.unwrap_err();
    assert!(err.to_string().contains("the copy began with"), "{err}");
    drop(copy);
    assert_eq!(count(&mut conn, "tasks").await, 0);

    let mut copy = bulk::CopyIn::open(&db.url).await.unwrap();
    for _ in 0..3 {
        copy.write(&batch).await.unwrap();
    }
    assert_eq!(copy.finish().await.unwrap(), 1_500);
    assert_eq!(count(&mut conn, "tasks").await, 1_500);
}

/// Every field of `NewTask`, set away from its default, is stored by each bulk path; a row
/// of `None`s takes the columns' defaults. The destructuring below has no `..`: a new field
/// of `NewTask` does not compile here until this test checks it.
#[tokio::test]
async fn every_field_of_new_task_is_stored_by_each_bulk_path() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owner = user(&mut conn, "fields@example.com").await;
    let team = Team::create(&conn, &NewTeam { name: "fields" })
        .await
        .unwrap();
    let parent_title = Title::parse("parent").unwrap();
    let parent = Task::create(&conn, &NewTask::new(owner.id, &parent_title))
        .await
        .unwrap();
    let title = Title::parse("every field").unwrap();
    let checklist = [
        "one",
        "two, \"quoted\"",
        "{braces}",
        "back\\slash",
        "",
        "NULL",
        "ünï",
    ];
    let full = NewTask {
        owner_id: owner.id,
        title: &title,
        team_id: Some(team.id),
        parent_id: Some(parent.id),
        description: Some("described, \"quoted\" \\ and ünïcode"),
        status: Some(TaskStatus::InProgress),
        priority: Some(Priority::new(5).unwrap()),
        due_date: chrono::NaiveDate::from_ymd_opt(2031, 2, 3),
        checklist: Some(checklist.iter().map(|s| s.to_string()).collect()),
    };
    let defaults = NewTask::new(owner.id, &title);
    for path in [
        "insert",
        "upsert",
        "copy_insert",
        "copy_insert_iter",
        "copy_insert_stream",
    ] {
        let rows = [full.clone(), defaults.clone()];
        let written = match path {
            "insert" => bulk::insert(&mut conn, &rows).await,
            "upsert" => bulk::upsert(&mut conn, &rows, (tasks::id,), OnConflict::Ignore).await,
            "copy_insert" => bulk::copy_insert(&db.url, &rows).await,
            "copy_insert_iter" => bulk::copy_insert_iter(&db.url, rows).await,
            _ => bulk::copy_insert_stream(&db.url, futures_util::stream::iter(rows)).await,
        };
        assert_eq!(written.unwrap(), 2, "{path}");
        let mut stored: Vec<Task> = Task::owned_by(&conn, &owner)
            .await
            .unwrap()
            .into_iter()
            .filter(|t| t.id != parent.id)
            .collect();
        stored.sort_by_key(|t| t.id);
        let [got, plain] = &stored[..] else {
            panic!("{path}: {stored:?}")
        };
        let NewTask {
            owner_id,
            title: t,
            team_id,
            parent_id,
            description,
            status,
            priority,
            due_date,
            checklist,
        } = &full;
        assert_eq!(got.owner_id, *owner_id, "{path}");
        assert_eq!(&got.title, *t, "{path}");
        assert_eq!(got.team_id, *team_id, "{path}");
        assert_eq!(got.parent_id, *parent_id, "{path}");
        assert_eq!(got.description.as_deref(), *description, "{path}");
        assert_eq!(Some(got.status), *status, "{path}");
        assert_eq!(Some(got.priority), *priority, "{path}");
        assert_eq!(got.due_date, *due_date, "{path}");
        assert_eq!(Some(&got.checklist), checklist.as_ref(), "{path}");
        // The migration's defaults, not values repeated in Rust.
        assert_eq!(plain.status, TaskStatus::Todo, "{path}");
        assert_eq!(plain.priority, Priority::NORMAL, "{path}");
        assert!(plain.checklist.is_empty(), "{path}");
        let ids: Vec<i64> = stored.iter().map(|t| t.id).collect();
        bulk::delete_by_ids(&conn, tasks::id, &ids).await.unwrap();
    }
}

/// The key of `update_by_key` is always named, and must be a column the rows carry.
#[tokio::test]
async fn update_by_key_refuses_a_key_the_rows_do_not_carry() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let change = TaskStatusUpdate {
        id: 1,
        status: TaskStatus::Done,
        priority: Priority::NORMAL,
    };
    let err = bulk::update_by_key(&mut conn, &[change], (tasks::title,))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("key \"title\""), "{err}");
}

diesel::table! {
    /// A table of volatile defaults, made by the tests below.
    copy_defaults (id) {
        id -> Int8,
        label -> Text,
        token -> Uuid,
        stamped -> Timestamptz,
        n -> Int8,
    }
}

const COPY_DEFAULTS_SQL: &str = "CREATE SEQUENCE copy_defaults_n; \
    CREATE TABLE copy_defaults ( \
      id BIGSERIAL PRIMARY KEY, \
      label TEXT NOT NULL DEFAULT 'unnamed', \
      token UUID NOT NULL UNIQUE DEFAULT gen_random_uuid(), \
      stamped TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(), \
      n BIGINT NOT NULL DEFAULT nextval('copy_defaults_n'))";

/// A `uuid` for both write paths (the app's tokio-postgres has no uuid feature).
#[derive(Debug, Clone, Copy)]
struct Token(uuid::Uuid);

impl diesel::serialize::ToSql<diesel::sql_types::Uuid, diesel::pg::Pg> for Token {
    fn to_sql<'b>(
        &'b self,
        out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
    ) -> diesel::serialize::Result {
        diesel::serialize::ToSql::<diesel::sql_types::Uuid, diesel::pg::Pg>::to_sql(&self.0, out)
    }
}

impl bulk::CopySql for Token {
    fn to_sql(
        &self,
        _: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::UUID
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A row where every `None` takes its column's (volatile) default.
#[derive(Debug, Clone, Default)]
struct Stamped {
    label: Option<String>,
    token: Option<Token>,
    stamped: Option<chrono::DateTime<chrono::Utc>>,
    n: Option<i64>,
}

impl bulk::BulkRow for Stamped {
    type Table = copy_defaults::table;

    fn columns(rows: &[Self]) -> Vec<bulk::Column<'_, copy_defaults::table>> {
        let (mut label, mut token, mut stamped, mut n) = (vec![], vec![], vec![], vec![]);
        for Stamped {
            label: l,
            token: t,
            stamped: s,
            n: k,
        } in rows
        {
            label.push(l.as_deref());
            token.push(*t);
            stamped.push(*s);
            n.push(*k);
        }
        vec![
            bulk::Column::or_default(copy_defaults::label, label),
            bulk::Column::or_default(copy_defaults::token, token),
            bulk::Column::or_default(copy_defaults::stamped, stamped),
            bulk::Column::or_default(copy_defaults::n, n),
        ]
    }
}

/// How many distinct values `expr` takes over the table's rows.
async fn distinct(conn: &mut AsyncPgConnection, expr: &str) -> i64 {
    let sql = format!("(SELECT count(DISTINCT {expr}) FROM copy_defaults)");
    diesel_async::RunQueryDsl::get_result(
        diesel::dsl::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(&sql)),
        conn,
    )
    .await
    .unwrap()
}

/// COPY evaluates a default per row, as INSERT does: 1,000 rows leaving a
/// `gen_random_uuid()` and a sequence default to the server get 1,000 distinct values of
/// each, through COPY as through unnest, and `clock_timestamp()` moves (its clock ticks in
/// microseconds, which two rows may share).
#[tokio::test]
async fn copy_evaluates_volatile_defaults_per_row() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    diesel_async::SimpleAsyncConnection::batch_execute(&mut conn, COPY_DEFAULTS_SQL)
        .await
        .unwrap();
    let rows = vec![
        Stamped {
            label: Some("copied".into()),
            ..Stamped::default()
        };
        1_000
    ];
    assert_eq!(bulk::copy_insert(&db.url, &rows).await.unwrap(), 1_000);
    for expr in ["token", "n"] {
        assert_eq!(distinct(&mut conn, expr).await, 1_000, "{expr}");
    }
    assert!(distinct(&mut conn, "stamped").await > 1);
    assert_eq!(bulk::insert(&mut conn, &rows).await.unwrap(), 1_000);
    for expr in ["token", "n"] {
        assert_eq!(distinct(&mut conn, expr).await, 2_000, "{expr}");
    }
}

/// Rows that default different columns, across batches and with rows defaulting every
/// column: explicit values are kept, each default is the row's own, and a bad row in any of
/// the COPY statements leaves nothing of the others.
#[tokio::test]
async fn copy_keeps_explicit_values_beside_per_row_defaults() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    diesel_async::SimpleAsyncConnection::batch_execute(&mut conn, COPY_DEFAULTS_SQL)
        .await
        .unwrap();
    let at = chrono::DateTime::from_timestamp(1_000_000_000, 0).unwrap();
    let row = |i: usize| Stamped {
        label: (!i.is_multiple_of(7)).then(|| format!("row {i}")),
        token: i
            .is_multiple_of(3)
            .then(|| Token(uuid::Uuid::from_u128(i as u128 + 1))),
        stamped: i.is_multiple_of(5).then_some(at),
        n: i.is_multiple_of(2).then_some(-(i as i64)),
    };
    let n = 2 * bulk::COPY_BATCH_ROWS + 1_001;
    let mut rows: Vec<Stamped> = (0..n).map(row).collect();
    rows.push(Stamped::default());
    let bad = Stamped {
        token: rows[3].token,
        ..Stamped::default()
    };
    rows.insert(5, bad);
    let err = bulk::copy_insert(&db.url, &rows).await.unwrap_err();
    assert!(
        matches!(&err, Error::Conflict { constraint } if constraint == "copy_defaults_token_key"),
        "{err:?}"
    );
    assert_eq!(count(&mut conn, "copy_defaults").await, 0);

    rows.remove(5);
    assert_eq!(
        bulk::copy_insert_iter(&db.url, rows.clone()).await.unwrap(),
        n + 1
    );
    assert_eq!(count(&mut conn, "copy_defaults").await, n as i64 + 1);
    assert_eq!(distinct(&mut conn, "token").await, n as i64 + 1);
    let explicit = |sql: &str| format!("(SELECT count(*) FROM copy_defaults WHERE {sql})");
    let checks = [
        ("label = 'unnamed'", n.div_ceil(7) + 1),
        ("label LIKE 'row %'", n - n.div_ceil(7)),
        (
            "token::text LIKE '00000000-0000-0000-0000-%'",
            n.div_ceil(3),
        ),
        ("stamped = '2001-09-09 01:46:40+00'", n.div_ceil(5)),
        ("n <= 0", n.div_ceil(2)),
    ];
    for (sql, want) in checks {
        let got: i64 = diesel_async::RunQueryDsl::get_result(
            diesel::dsl::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(&explicit(
                sql,
            ))),
            &mut conn,
        )
        .await
        .unwrap();
        assert_eq!(got, want as i64, "{sql}");
    }
    // Explicit tokens are the rows' own: `row i` has token i + 1.
    let mismatched: i64 = diesel_async::RunQueryDsl::get_result(
        diesel::dsl::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "(SELECT count(*) FROM copy_defaults WHERE token::text LIKE '00000000-%' \
             AND label LIKE 'row %' AND ('x' || right(token::text, 12))::bit(48)::bigint - 1 \
             <> substr(label, 5)::bigint)",
        )),
        &mut conn,
    )
    .await
    .unwrap();
    assert_eq!(mismatched, 0);
    let defaulted = format!(
        "CASE WHEN stamped <> '{}' THEN stamped END",
        at.to_rfc3339()
    );
    assert!(distinct(&mut conn, &defaulted).await > 1);
    assert_eq!(
        distinct(&mut conn, "CASE WHEN n > 0 THEN n END").await,
        (n / 2 + 1) as i64
    );
}

/// A write whose COPY failed loses the copy: `finish` then reports the failure rather than
/// a commit that the server turned into a rollback.
#[tokio::test]
async fn copy_in_refuses_to_finish_after_a_failed_write() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    diesel_async::SimpleAsyncConnection::batch_execute(&mut conn, COPY_DEFAULTS_SQL)
        .await
        .unwrap();
    let token = Some(Token(uuid::Uuid::from_u128(7)));
    let twice = Stamped {
        token,
        ..Stamped::default()
    };
    let batch = [twice.clone(), twice, Stamped::default()];
    let mut copy = bulk::CopyIn::open(&db.url).await.unwrap();
    assert!(copy.write(&batch).await.is_err());
    assert!(copy.write(&batch[2..]).await.is_err(), "the copy is lost");
    assert!(copy.finish().await.is_err());
    assert_eq!(count(&mut conn, "copy_defaults").await, 0);
}
