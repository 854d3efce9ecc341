//! wrk, the HTTP load generator: a Lua script per workload (which request to send next,
//! and a summary line at the end), run against the server for a while, its line read back.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

/// What one wrk run measured.
#[derive(Debug)]
pub struct Run {
    /// Responses per second.
    pub rate: f64,
    /// Median and 99th percentile latency, in ms.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Requests that failed: refused or broken connections, timeouts, statuses >= 400.
    pub errors: u64,
}

/// What every script ends with: wrk's summary as one line [`parse`] reads. Each wrk thread
/// gets a seed of its own in `setup`, so the two threads do not send the same ids.
const COMMON: &str = r#"
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("seed", threads)
end
function init(args)
  math.randomseed(os.time() * 1000 + (seed or 0))
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("wrk-result requests=%d duration_us=%d p50_us=%.0f p99_us=%.0f errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"#;

/// The script of `GET /tasks/{id}`: ids drawn from the `rows` seeded tasks.
pub fn get_task(rows: usize) -> String {
    format!(
        "function request()\n  return wrk.format(\"GET\", \"/tasks/\" .. math.random(1, {rows}))\nend\n{COMMON}"
    )
}

/// The script of `GET /users/{id}/tasks`: a first page (20 tasks) of one of the `users`.
pub fn user_tasks(users: usize) -> String {
    format!(
        "function request()\n  return wrk.format(\"GET\", \"/users/\" .. math.random(1, {users}) .. \"/tasks\")\nend\n{COMMON}"
    )
}

/// The script of `POST /tasks`: a task for one of the `users`, in a body of its own.
pub fn create_task(users: usize) -> String {
    // Written with `replace`, not `format!`: Lua's braces would be doubled, and doubled
    // braces read as Liquid placeholders to the template's checks.
    let script = r#"local headers = { ["Content-Type"] = "application/json" }
function request()
  local body = string.format('{"owner_id": %d, "title": "bench", "priority": %d}',
    math.random(1, USERS), math.random(1, 5))
  return wrk.format("POST", "/tasks", headers, body)
end
"#;
    script.replace("USERS", &users.to_string()) + COMMON
}

/// Runs wrk with `script` against `base` (`http://127.0.0.1:PORT`) from `connections`
/// connections over two threads (the machine's cores) for `duration`, in whole seconds.
pub async fn run(
    script: &Path,
    base: &str,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Run> {
    let threads = connections.min(2);
    let out = tokio::process::Command::new("wrk")
        .args(["--threads", &threads.to_string()])
        .args(["--connections", &connections.to_string()])
        .args(["--duration", &format!("{}s", seconds(duration))])
        .args(["--timeout", "10s", "--script"])
        .arg(script)
        .arg(base)
        .kill_on_drop(true)
        .output()
        .await
        .context("run wrk (Debian: apt-get install wrk; scripts/bench.sh installs it)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "wrk failed: {}{}",
        String::from_utf8_lossy(&out.stderr).trim(),
        stdout.trim()
    );
    parse(&stdout).with_context(|| format!("no summary in wrk's output: {stdout}"))
}

/// wrk takes whole seconds: at least one.
pub fn seconds(duration: Duration) -> u64 {
    duration.as_secs_f64().ceil().max(1.0) as u64
}

/// The `wrk-result` line the scripts print, read back.
fn parse(stdout: &str) -> Option<Run> {
    let line = stdout.lines().find_map(|l| l.strip_prefix("wrk-result "))?;
    let field = |name: &str| -> Option<f64> {
        let value = line
            .split_whitespace()
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='));
        value?.parse().ok()
    };
    let (requests, duration_us) = (field("requests")?, field("duration_us")?);
    Some(Run {
        rate: requests / (duration_us / 1e6).max(1e-9),
        p50_ms: field("p50_us")? / 1000.0,
        p99_ms: field("p99_us")? / 1000.0,
        errors: field("errors")? as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn the_summary_line_reads_back_as_rates_in_ms() {
        let out = "Running 1s test @ http://127.0.0.1:1\n\
                   wrk-result requests=5000 duration_us=2000000 p50_us=800 p99_us=4250 errors=3\n";
        let run = parse(out).unwrap();
        assert_eq!(run.rate, 2500.0);
        assert_eq!((run.p50_ms, run.p99_ms, run.errors), (0.8, 4.25, 3));
        assert!(parse("Running 1s test\n").is_none());
    }
}
