//! `bench`: bulk-write and loading techniques side by side on a scratch database, one run,
//! with ratios to the fastest. `cargo run --release --bin bench -- --rows 100000 --json out.json`

use std::time::Instant;

use anyhow::Context;
use app::bulk::{self, OnConflict};
use app::db::{self, DatabaseUrl};
use app::instrument::QueryCounter;
use app::migrations::{self, Scratch};
use app::models::{
    Email, Membership, NewTask, Priority, Role, TaskStatus, TaskStatusUpdate, Title, UserRow,
};
use app::schema::{tasks, team_members};
use app::{Error, loaders};
use app::{errln, outln};
use clap::Parser;
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use serde::Serialize;

/// Compare bulk insert/upsert/update/delete and eager-loading techniques on a scratch database.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Tasks to write per workload.
    #[arg(long, default_value_t = 100_000)]
    rows: usize,
    /// Users the tasks are spread over (and loaded back with their tasks and tags).
    #[arg(long, default_value_t = 1_000)]
    users: usize,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
    /// Server to create the scratch database on [default: $DATABASE_URL, also from .env]
    #[arg(long, value_name = "URL")]
    url: Option<String>,
}

#[derive(Debug, Serialize)]
struct Measurement {
    workload: &'static str,
    technique: &'static str,
    seconds: f64,
    queries: Option<usize>,
}

#[derive(Debug, Serialize)]
struct Report {
    rows: usize,
    users: usize,
    results: Vec<Measurement>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = run(Args::parse()).await;
    app::cli::finish("bench", result.map(|()| std::process::ExitCode::SUCCESS)).await
}

async fn run(args: Args) -> anyhow::Result<()> {
    let url = db::url_from(args.url.as_deref())?;
    let scratch = Scratch::create(&url).await?;
    let result = bench(&args, &scratch.url).await;
    scratch.drop_now().await?;
    let report = Report {
        rows: args.rows,
        users: args.users,
        results: result?,
    };
    print_table(&report);
    if let Some(file) = &args.json {
        std::fs::write(file, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("write {}", file.display()))?;
        outln!("\nwrote {}", file.display());
    }
    Ok(())
}

async fn timed<T>(work: impl Future<Output = Result<T, Error>>) -> anyhow::Result<f64> {
    let start = Instant::now();
    work.await?;
    Ok(start.elapsed().as_secs_f64())
}

async fn bench(args: &Args, url: &DatabaseUrl) -> anyhow::Result<Vec<Measurement>> {
    migrations::run_pending(url).await?;
    let mut conn = db::connect(url).await?;
    let users: Vec<UserRow> = (0..args.users)
        .map(|i| {
            Ok(UserRow {
                email: Email::parse(&format!("bench{i}@example.com"))?,
                display_name: format!("Bench {i}"),
            })
        })
        .collect::<Result<_, Error>>()?;
    bulk::insert(&mut conn, &users).await?;
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
    let mut results = Vec::new();
    let mut record = |workload, technique, seconds, queries| {
        errln!("{workload:<8} {technique:<12} {seconds:>8.3} s");
        results.push(Measurement {
            workload,
            technique,
            seconds,
            queries,
        });
    };

    // Insert: each technique on an empty table.
    let truncate = "TRUNCATE tasks RESTART IDENTITY CASCADE";
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
    record("insert", "row_by_row", secs, None);
    conn.batch_execute(truncate).await?;
    record(
        "insert",
        "batched",
        timed(app::models::Task::insert_batched(&mut conn, &rows)).await?,
        None,
    );
    conn.batch_execute(truncate).await?;
    record(
        "insert",
        "unnest",
        timed(bulk::insert(&mut conn, &rows)).await?,
        None,
    );
    conn.batch_execute(truncate).await?;
    record(
        "insert",
        "copy",
        timed(bulk::copy_insert(url, &rows)).await?,
        None,
    );
    // The server's own floor: the same rows made by one statement, with nothing to send.
    let (n, users) = (args.rows, args.users);
    conn.batch_execute(truncate).await?;
    let floor = format!(
        "INSERT INTO tasks (owner_id, title, priority) SELECT 1 + g % {users}, 'Task ' || g, \
         1 + g % 5 FROM generate_series(0, {n} - 1) g"
    );
    record(
        "insert",
        "server_floor",
        floor_of(&mut conn, &floor).await?,
        None,
    );

    // Upsert: half the memberships exist, every row is offered again with a new role.
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
        bulk::insert(&mut conn, half).await?;
        let secs = match technique {
            "unnest" => {
                let key = (team_members::team_id, team_members::user_id);
                let on_conflict = OnConflict::update((team_members::role,));
                timed(bulk::upsert(&mut conn, &promoted, key, on_conflict)).await?
            }
            "batched" => timed(upsert_batched(&mut conn, &promoted)).await?,
            _ => {
                let floor = format!(
                    "INSERT INTO team_members (team_id, user_id, role) \
                     SELECT 1 + g / {users}, 1 + g % {users}, 'admin' \
                     FROM generate_series(0, {n} - 1) g \
                     ON CONFLICT (team_id, user_id) DO UPDATE SET role = EXCLUDED.role"
                );
                floor_of(&mut conn, &floor).await?
            }
        };
        record("upsert", technique, secs, None);
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
    ] {
        conn.batch_execute(truncate).await?;
        bulk::copy_insert(url, &rows).await?;
        let secs = match (workload, technique) {
            ("update", "unnest") => {
                timed(bulk::update_by_key(&mut conn, &updates, (tasks::id,))).await?
            }
            ("update", _) => {
                let floor =
                    format!("UPDATE tasks SET status = 'done', priority = 2 WHERE id <= {n}");
                floor_of(&mut conn, &floor).await?
            }
            (_, "any_array") => timed(bulk::delete_by_ids(&conn, tasks::id, &ids)).await?,
            _ => floor_of(&mut conn, &format!("DELETE FROM tasks WHERE id <= {n}")).await?,
        };
        record(workload, technique, secs, None);
    }
    conn.batch_execute(truncate).await?;

    // Loading every user with tasks and tags: N+1 against eager and joined loaders.
    bulk::copy_insert(url, &rows).await?;
    conn.batch_execute(
        "INSERT INTO tags (name) SELECT 'tag-' || g FROM generate_series(1, 10) g;
         INSERT INTO task_tags (task_id, tag_id) SELECT id, 1 + id % 10 FROM tasks;
         ANALYZE",
    )
    .await?;
    let counter = QueryCounter::install(&mut conn);
    // Warm the caches once so no technique pays for the first read from disk.
    loaders::eager(&conn, &owner_ids).await?;
    for (technique, kind) in [("naive", 0), ("eager", 1), ("joined", 2)] {
        let load = async |conn: &mut AsyncPgConnection| match kind {
            0 => loaders::naive(conn, &owner_ids).await,
            1 => loaders::eager(conn, &owner_ids).await,
            _ => loaders::joined(conn, &owner_ids).await,
        };
        let start = Instant::now();
        let (loaded, queries) = counter.during(load(&mut conn)).await;
        let secs = start.elapsed().as_secs_f64();
        anyhow::ensure!(
            loaded?.len() == args.users,
            "{technique} loaded a wrong number of users"
        );
        record("load", technique, secs, Some(queries));
    }
    Ok(results)
}

/// Seconds one server-side statement takes to make the same change: the floor our indexes,
/// triggers and foreign keys set, which no client technique can beat. The statements are
/// fixed text with numbers only, so `batch_execute` (no binds) is what measures them.
async fn floor_of(conn: &mut AsyncPgConnection, sql: &str) -> anyhow::Result<f64> {
    let start = Instant::now();
    conn.batch_execute(sql).await?;
    Ok(start.elapsed().as_secs_f64())
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

fn print_table(report: &Report) {
    outln!(
        "\n{} rows, {} users\n{:<8} {:<12} {:>9} {:>12} {:>8} {:>9} {:>9}",
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
    for m in &report.results {
        let best = report
            .results
            .iter()
            .filter(|o| o.workload == m.workload)
            .map(|o| o.seconds)
            .fold(f64::INFINITY, f64::min);
        let rows = if m.workload == "load" {
            report.users
        } else {
            report.rows
        };
        let floor = (report.results.iter())
            .find(|o| o.workload == m.workload && o.technique == "server_floor")
            .map_or("-".into(), |f| format!("{:.2}x", m.seconds / f.seconds));
        outln!(
            "{:<8} {:<12} {:>9.3} {:>12.0} {:>8} {:>8.2}x {:>9}",
            m.workload,
            m.technique,
            m.seconds,
            rows as f64 / m.seconds,
            m.queries.map_or("-".into(), |q| q.to_string()),
            m.seconds / best,
            floor
        );
    }
}
