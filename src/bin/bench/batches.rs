//! Bulk writes (insert, upsert, update, delete) against the server's floor, and loading
//! users with their tasks and tags (N+1, eager, joined; a dashboard sequential and
//! pipelined).

use std::time::Instant;

use app::bulk::{self, OnConflict};
use app::db::DatabaseUrl;
use app::db::instrument::QueryCounter;
use app::models::{Membership, NewTask, Priority, Role, TaskStatus, TaskStatusUpdate, Title};
use app::schema::{tasks, team_members};
use app::{Error, loaders, outln, reports};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use super::{Args, Measurement, Results, floor_insert, floor_of};

async fn timed<T>(work: impl Future<Output = Result<T, Error>>) -> anyhow::Result<f64> {
    let start = Instant::now();
    work.await?;
    Ok(start.elapsed().as_secs_f64())
}

fn rec(
    results: &mut Results,
    workload: &'static str,
    technique: &'static str,
    seconds: f64,
    queries: Option<usize>,
) {
    results.push(Measurement {
        workload,
        technique,
        seconds,
        queries,
        ..Measurement::default()
    });
}

/// The bulk and loading workloads the run asks for, on `conn` (users already in).
pub async fn run(
    args: &Args,
    url: &DatabaseUrl,
    conn: &mut AsyncPgConnection,
    results: &mut Results,
) -> anyhow::Result<()> {
    let owner_ids: Vec<i64> = (1..=args.users as i64).collect();
    let titles: Vec<Title> = (0..args.rows)
        .map(|i| Title::parse(&format!("Task {i}")))
        .collect::<Result<_, _>>()?;
    let rows: Vec<NewTask> = titles
        .iter()
        .enumerate()
        .map(|(i, title)| NewTask {
            priority: Some(Priority::new(1 + (i % 5) as i64).expect("1..=5")),
            ..NewTask::new(owner_ids[i % owner_ids.len()], title)
        })
        .collect();
    let truncate = "TRUNCATE tasks RESTART IDENTITY CASCADE";
    let (n, users) = (args.rows, args.users);
    // Insert: each technique on an empty table.
    if args.wants("insert") {
        conn.batch_execute(truncate).await?;
        let secs = timed(conn.transaction::<_, Error, _>(async |conn| {
            for row in &rows {
                diesel::insert_into(tasks::table)
                    .values(row)
                    .execute(conn)
                    .await?;
            }
            Ok(())
        }))
        .await?;
        rec(results, "insert", "row_by_row", secs, None);
        conn.batch_execute(truncate).await?;
        rec(
            results,
            "insert",
            "batched",
            timed(app::models::Task::insert_batched(conn, &rows)).await?,
            None,
        );
        conn.batch_execute(truncate).await?;
        rec(
            results,
            "insert",
            "unnest",
            timed(bulk::insert(conn, &rows)).await?,
            None,
        );
        conn.batch_execute(truncate).await?;
        rec(
            results,
            "insert",
            "copy",
            timed(bulk::copy_insert(url, &rows)).await?,
            None,
        );
        // The server's own floor: the same rows made by one statement, with nothing to send.
        conn.batch_execute(truncate).await?;
        let floor = floor_insert(n, users);
        rec(
            results,
            "insert",
            "server_floor",
            floor_of(conn, &floor).await?,
            None,
        );
    }

    // Upsert: half the memberships exist, every row is offered again with a new role.
    if args.wants("upsert") {
        let teams = args.rows.div_ceil(args.users).max(1);
        conn.batch_execute(&format!(
            "INSERT INTO teams (name) SELECT 'Bench team ' || g FROM generate_series(1, {teams}) g"
        ))
        .await?;
        let members: Vec<Membership> = (0..args.rows)
            .map(|i| Membership {
                team_id: 1 + (i / args.users) as i64,
                user_id: owner_ids[i % owner_ids.len()],
                role: Role::Member,
            })
            .collect();
        let promoted: Vec<Membership> = members
            .iter()
            .map(|m| Membership {
                role: Role::Admin,
                ..m.clone()
            })
            .collect();
        let half = &members[..members.len() / 2];
        for technique in ["batched", "unnest", "server_floor"] {
            conn.batch_execute("TRUNCATE team_members").await?;
            bulk::insert(conn, half).await?;
            let secs = match technique {
                "unnest" => {
                    let key = (team_members::team_id, team_members::user_id);
                    let on_conflict = OnConflict::update((team_members::role,));
                    timed(bulk::upsert(conn, &promoted, key, on_conflict)).await?
                }
                "batched" => timed(upsert_batched(conn, &promoted)).await?,
                _ => {
                    let floor = format!(
                        "INSERT INTO team_members (team_id, user_id, role) \
                     SELECT 1 + g / {users}, 1 + g % {users}, 'admin' \
                     FROM generate_series(0, {n} - 1) g \
                     ON CONFLICT (team_id, user_id) DO UPDATE SET role = EXCLUDED.role"
                    );
                    floor_of(conn, &floor).await?
                }
            };
            rec(results, "upsert", technique, secs, None);
        }
    }

    // Update by key and delete by ids: each technique on a fresh copy of the same rows, so
    // none pays for the dead rows another left behind.
    let updates: Vec<TaskStatusUpdate> = (1..=args.rows as i64)
        .map(|id| TaskStatusUpdate {
            id,
            status: TaskStatus::Done,
            priority: Priority::new(2).expect("2"),
        })
        .collect();
    let ids: Vec<i64> = (1..=args.rows as i64).collect();
    for (workload, technique) in [
        ("update", "unnest"),
        ("update", "server_floor"),
        ("delete", "any_array"),
        ("delete", "server_floor"),
    ]
    .into_iter()
    .filter(|(workload, _)| args.wants(workload))
    {
        conn.batch_execute(truncate).await?;
        bulk::copy_insert(url, &rows).await?;
        let secs = match (workload, technique) {
            ("update", "unnest") => {
                timed(bulk::update_by_key(conn, &updates, (tasks::id,))).await?
            }
            ("update", _) => {
                let floor =
                    format!("UPDATE tasks SET status = 'done', priority = 2 WHERE id <= {n}");
                floor_of(conn, &floor).await?
            }
            (_, "any_array") => timed(bulk::delete_by_ids(conn, tasks::id, &ids)).await?,
            _ => floor_of(conn, &format!("DELETE FROM tasks WHERE id <= {n}")).await?,
        };
        rec(results, workload, technique, secs, None);
    }
    conn.batch_execute(truncate).await?;
    if !args.wants("load") && !args.wants("dashboard") {
        return Ok(());
    }

    // Loading every user with tasks and tags: N+1 against eager and joined loaders.
    bulk::copy_insert(url, &rows).await?;
    conn.batch_execute(
        "INSERT INTO tags (name) SELECT 'tag-' || g FROM generate_series(1, 10) g;
         INSERT INTO task_tags (task_id, tag_id) SELECT id, 1 + id % 10 FROM tasks;
         ANALYZE",
    )
    .await?;
    let counter = QueryCounter::install(conn);
    // Warm the caches once so no technique pays for the first read from disk.
    loaders::eager(conn, &owner_ids).await?;
    let loads = if args.wants("load") {
        &["naive", "eager", "joined"][..]
    } else {
        &[]
    };
    for (kind, technique) in loads.iter().enumerate() {
        let load = async |conn: &mut AsyncPgConnection| match kind {
            0 => loaders::naive(conn, &owner_ids).await,
            1 => loaders::eager(conn, &owner_ids).await,
            _ => loaders::joined(conn, &owner_ids).await,
        };
        let start = Instant::now();
        let (loaded, queries) = counter.during(load(conn)).await;
        let secs = start.elapsed().as_secs_f64();
        anyhow::ensure!(
            loaded?.len() == args.users,
            "{technique} loaded a wrong number of users"
        );
        rec(results, "load", technique, secs, Some(queries));
    }
    if args.wants("dashboard") {
        dashboard(conn, &owner_ids, &counter, results).await?;
    }
    Ok(())
}

/// Every user's dashboard (four independent reads), one read after another and pipelined.
async fn dashboard(
    conn: &AsyncPgConnection,
    owner_ids: &[i64],
    counter: &QueryCounter,
    results: &mut Results,
) -> anyhow::Result<()> {
    for technique in ["sequential", "pipelined"] {
        let start = Instant::now();
        let (done, queries) = counter
            .during(async {
                for &id in owner_ids {
                    match technique {
                        "sequential" => reports::dashboard_sequential(conn, id).await?,
                        _ => reports::dashboard(conn, id).await?,
                    };
                }
                Ok::<_, Error>(())
            })
            .await;
        done?;
        let secs = start.elapsed().as_secs_f64();
        rec(results, "dashboard", technique, secs, Some(queries));
    }
    Ok(())
}

/// Diesel's own upsert DSL, chunked under the bind-parameter limit (3 binds per row).
async fn upsert_batched(conn: &mut AsyncPgConnection, rows: &[Membership]) -> Result<usize, Error> {
    conn.transaction::<_, Error, _>(async |conn| {
        let mut written = 0;
        for chunk in rows.chunks(65_535 / 3) {
            let values: Vec<_> = chunk
                .iter()
                .map(|m| {
                    (
                        team_members::team_id.eq(m.team_id),
                        team_members::user_id.eq(m.user_id),
                        team_members::role.eq(m.role),
                    )
                })
                .collect();
            written += diesel::insert_into(team_members::table)
                .values(values)
                .on_conflict((team_members::team_id, team_members::user_id))
                .do_update()
                .set(team_members::role.eq(excluded(team_members::role)))
                .execute(conn)
                .await?;
        }
        Ok(written)
    })
    .await
}

/// The bulk and loading table: each technique against the fastest and the server's floor.
pub fn print_table(report: &super::Report, rows: &[&Measurement]) {
    outln!(
        "\n{} rows, {} users\n{:<9} {:<12} {:>9} {:>12} {:>8} {:>9} {:>9}",
        report.rows,
        report.users,
        "workload",
        "technique",
        "seconds",
        "rows/s",
        "queries",
        "vs best",
        "vs floor"
    );
    for m in rows {
        let best = (rows.iter())
            .filter(|o| o.workload == m.workload)
            .map(|o| o.seconds)
            .fold(f64::INFINITY, f64::min);
        let count = match m.workload {
            "load" | "dashboard" => report.users,
            _ => report.rows,
        };
        let floor = (rows.iter())
            .find(|o| o.workload == m.workload && o.technique == "server_floor")
            .map_or("-".into(), |f| format!("{:.2}x", m.seconds / f.seconds));
        outln!(
            "{:<9} {:<12} {:>9.3} {:>12.0} {:>8} {:>8.2}x {:>9}",
            m.workload,
            m.technique,
            m.seconds,
            count as f64 / m.seconds,
            m.queries.map_or("-".into(), |q| q.to_string()),
            m.seconds / best,
            floor
        );
    }
}
