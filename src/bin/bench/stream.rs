//! A streamed insert bigger than memory: tasks made on the fly go in through
//! `bulk::copy_insert_iter`, in a process of their own so its peak memory is the copy's
//! alone; rows/s at three sizes shows the cost grows linearly.

use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use app::bulk::{self, BulkRow, Column};
use app::db;
use app::schema::tasks;
use app::{errln, outln};
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use serde::{Deserialize, Serialize};

use super::{Args, Measurement, Results, floor_insert, floor_of};

/// What the child process reports.
#[derive(Debug, Serialize, Deserialize)]
struct ChildReport {
    seconds: f64,
    peak_rss_mib: f64,
}

/// A task as a generator makes it: owned, so an iterator can hand it over.
struct TaskLine {
    owner_id: i64,
    title: String,
    priority: i16,
}

impl BulkRow for TaskLine {
    type Table = tasks::table;

    fn columns(rows: &[Self]) -> Vec<Column<'_, tasks::table>> {
        let (mut owner, mut title, mut priority) = (vec![], vec![], vec![]);
        for TaskLine {
            owner_id,
            title: t,
            priority: p,
        } in rows
        {
            owner.push(*owner_id);
            title.push(t.as_str());
            priority.push(*p);
        }
        vec![
            Column::new(tasks::owner_id, owner),
            Column::new(tasks::title, title),
            Column::new(tasks::priority, priority),
        ]
    }
}

/// The streamed insert at a hundredth, a tenth and all of `--stream-rows`, each against
/// the server making the same rows alone.
pub async fn run(
    args: &Args,
    url: &db::DatabaseUrl,
    conn: &mut AsyncPgConnection,
    results: &mut Results,
) -> anyhow::Result<()> {
    let largest = args.stream_rows.unwrap_or(args.rows * 10);
    let mut sizes = vec![largest / 100, largest / 10, largest];
    sizes.retain(|&n| n > 0);
    sizes.dedup();
    let truncate = "TRUNCATE tasks RESTART IDENTITY CASCADE";
    for n in sizes {
        conn.batch_execute(truncate).await?;
        let report = spawn_child(n, args.users, url.clone()).await?;
        results.push(Measurement {
            workload: "insert_stream",
            technique: "copy_iter",
            seconds: report.seconds,
            rows: Some(n),
            peak_rss_mib: Some(report.peak_rss_mib),
            ..Measurement::default()
        });
        conn.batch_execute(truncate).await?;
        let seconds = floor_of(conn, &floor_insert(n, args.users)).await?;
        results.push(Measurement {
            workload: "insert_stream",
            technique: "server_floor",
            seconds,
            rows: Some(n),
            ..Measurement::default()
        });
    }
    conn.batch_execute(truncate).await?;
    Ok(())
}

/// Runs this binary again as the child; the URL travels in the environment, never argv.
async fn spawn_child(n: usize, users: usize, url: db::DatabaseUrl) -> anyhow::Result<ChildReport> {
    let exe = std::env::current_exe().context("find the bench binary")?;
    let out = tokio::task::spawn_blocking(move || {
        Command::new(exe)
            .args([
                "--stream-child",
                &n.to_string(),
                "--users",
                &users.to_string(),
            ])
            .env("DATABASE_URL", url.expose())
            .output()
    })
    .await??;
    anyhow::ensure!(
        out.status.success(),
        "the streamed insert of {n} rows failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim()).with_context(|| format!("read the child's report {line:?}"))
}

/// The child: streams `n` tasks into `$DATABASE_URL` and prints seconds and peak RSS.
pub async fn child(n: usize, users: usize) -> anyhow::Result<()> {
    let url = db::url_from(None)?;
    let users = users.max(1);
    let rows = (0..n).map(|i| TaskLine {
        owner_id: 1 + (i % users) as i64,
        title: format!("Task {i}"),
        priority: 1 + (i % 5) as i16,
    });
    let start = Instant::now();
    let written = bulk::copy_insert_iter(&url, rows).await?;
    let seconds = start.elapsed().as_secs_f64();
    anyhow::ensure!(written == n, "wrote {written} of {n} rows");
    let report = ChildReport {
        seconds,
        peak_rss_mib: peak_rss_mib()?,
    };
    outln!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// The process's peak resident memory (`VmHWM` in /proc/self/status), in MiB.
fn peak_rss_mib() -> anyhow::Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status").context("read /proc/self/status")?;
    let kib = (status.lines())
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .context("no VmHWM in /proc/self/status")?;
    Ok(kib / 1024.0)
}

/// The streamed insert's table: rows/s at each size (flat means linear) and peak memory.
pub fn print_table(rows: &[&Measurement]) {
    outln!(
        "\n{:<13} {:<12} {:>9} {:>9} {:>12} {:>10} {:>9}",
        "workload",
        "technique",
        "rows",
        "seconds",
        "rows/s",
        "peak MiB",
        "vs floor"
    );
    for m in rows {
        let n = m.rows.unwrap_or(0);
        let floor = (rows.iter())
            .find(|o| o.technique == "server_floor" && o.rows == m.rows)
            .map_or("-".into(), |f| format!("{:.2}x", m.seconds / f.seconds));
        outln!(
            "{:<13} {:<12} {:>9} {:>9.3} {:>12.0} {:>10} {:>9}",
            m.workload,
            m.technique,
            n,
            m.seconds,
            n as f64 / m.seconds,
            m.peak_rss_mib.map_or("-".into(), |p| format!("{p:.1}")),
            floor
        );
    }
    if rows.iter().any(|m| m.peak_rss_mib.is_some()) {
        errln!("peak MiB: the whole child process (runtime, TLS, the copy), not only the rows");
    }
}
