//! The reference: pgbench running the very statements the model API sends, captured from
//! a run of it, from as many clients.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use app::db::{self, DatabaseUrl};
use app::migrations;
use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel_async::AsyncConnection;

use super::Op;
use super::load::{Load, cpu_seconds};

/// Records each statement's SQL (never its binds) as Diesel sends it.
#[derive(Debug, Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

impl Instrumentation for Capture {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            let text = query.to_string();
            let sql = text.split(" -- binds: ").next().unwrap_or(&text);
            self.0
                .lock()
                .expect("not poisoned")
                .push(sql.trim().to_owned());
        }
    }
}

/// A pgbench script running exactly the statements `op` sends through the model API,
/// captured by running it once. A model change that alters them fails here, loudly,
/// instead of comparing against different SQL.
pub async fn script(
    op: Op,
    url: &DatabaseUrl,
    rows: usize,
    users: usize,
) -> anyhow::Result<(String, Vec<String>)> {
    let mut conn = db::connect(url).await?;
    let capture = Capture::default();
    conn.set_instrumentation(capture.clone());
    op.run(&mut conn, 1, users as i64).await?;
    let statements = capture.0.lock().expect("not poisoned").clone();
    let values = op.pgbench_values();
    anyhow::ensure!(
        statements.len() == values.len(),
        "{} sends {} statements, the pgbench script expects {}: {statements:?}",
        op.workload(),
        statements.len(),
        values.len()
    );
    let mut script = format!(
        "\\set id random(1, {rows})\n\\set prio 1 + :id % 5\n\\set author 1 + :id % {users}\n"
    );
    for (sql, values) in statements.iter().zip(values) {
        let params = placeholders(sql);
        anyhow::ensure!(
            params == values.len(),
            "{sql:?} has {params} parameters, the pgbench script passes {}",
            values.len()
        );
        let mut sql = sql.clone();
        // Highest first, so `$1` never eats the start of `$10`.
        for (i, value) in values.iter().enumerate().rev() {
            sql = sql.replace(&format!("${}", i + 1), value);
        }
        script.push_str(&sql);
        script.push_str(";\n");
    }
    Ok((script, statements))
}

/// The highest `$n` in `sql`.
fn placeholders(sql: &str) -> usize {
    sql.split('$')
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<usize>().ok()
        })
        .max()
        .unwrap_or(0)
}

/// pgbench running `script` (`-M prepared`, as diesel-async prepares its statements) from
/// `clients` connections for `secs` seconds; latencies from its per-transaction log.
pub fn pgbench(url: &DatabaseUrl, script: &str, clients: usize, secs: u64) -> anyhow::Result<Load> {
    let dir = std::env::temp_dir().join(format!("bench-pgbench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let result = pgbench_in(&dir, url, script, clients, secs);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn pgbench_in(
    dir: &std::path::Path,
    url: &DatabaseUrl,
    script: &str,
    clients: usize,
    secs: u64,
) -> anyhow::Result<Load> {
    let file = dir.join("script.sql");
    std::fs::write(&file, script)?;
    // The password goes in the environment, never on a command line.
    let (bare, env) = db::tool_connection(url)?;
    let threads = clients.clamp(1, 2).to_string();
    let cpu = cpu_seconds()?;
    let out = Command::new(migrations::tool("pgbench"))
        .args(["--no-vacuum", "--protocol=prepared", "--file"])
        .arg(&file)
        .args(["--client", &clients.to_string(), "--jobs", &threads])
        .args(["--time", &secs.to_string(), "--log", "--log-prefix"])
        .arg(dir.join("log"))
        .arg(&bare)
        .envs(env)
        .output()
        .context("run pgbench (PostgreSQL's server package has it)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "pgbench failed: {}{}",
        String::from_utf8_lossy(&out.stderr).trim(),
        stdout.trim()
    );
    let ops_per_s = (stdout.lines())
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        .with_context(|| format!("no tps in pgbench's output: {stdout}"))?;
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_log =
            (path.file_name().and_then(|n| n.to_str())).is_some_and(|n| n.starts_with("log."));
        if !is_log {
            continue;
        }
        // client_id transaction_no time_us script_no epoch epoch_us
        for line in std::fs::read_to_string(&path)?.lines() {
            if let Some(us) = line.split_whitespace().nth(2).and_then(|v| v.parse().ok()) {
                latencies.push(Duration::from_micros(us));
            }
        }
    }
    Ok(Load {
        seconds: secs as f64,
        ops_per_s,
        latencies,
        cpu_seconds: cpu_seconds()?.1 - cpu.1,
    })
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_counts_the_highest_parameter() {
        assert_eq!(placeholders("SELECT 1"), 0);
        assert_eq!(placeholders("SELECT $1 LIMIT $2"), 2);
        assert_eq!(placeholders("VALUES ($2, $10, $1)"), 10);
        assert_eq!(placeholders("SELECT '$' || $3, $x"), 3);
    }
}
