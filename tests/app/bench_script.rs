//! `scripts/bench.sh` finds a server and runs the benchmark, passing its arguments through
//! (a dev build here: the numbers are not the point). The script's `cargo run` relinks
//! `target/debug/bench`, which other tests run: it holds `relinking_bench` meanwhile.

use std::process::Command;

use crate::support::{TempDir, relinking_bench, server_url, wrk_present};

#[test]
fn bench_script_prints_the_table_and_writes_json_where_asked() {
    let _relinking = relinking_bench();
    let dir = TempDir::new("bench-script");
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench.sh"))
        .args([
            "--dev", "--rows", "300", "--users", "30", "--json", "b.json",
        ])
        // The bulk and loading workloads only: the arguments pass through, and the OLTP and
        // streamed ones (bench.rs) would add minutes in every generated project.
        .args(["--workloads", "insert,load"])
        .current_dir(&dir.0)
        .env("DATABASE_URL", server_url().expose())
        .output()
        .expect("run scripts/bench.sh");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in ["workload", "copy", "unnest", "eager", "naive"] {
        assert!(table.contains(expected), "{expected:?} not in\n{table}");
    }
    // Relative to where the script ran, not to the project.
    let json = std::fs::read_to_string(dir.0.join("b.json")).expect("b.json in the caller's dir");
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["rows"], 300);
    assert!(
        report["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["technique"] == "copy"),
        "{json}"
    );
}

/// `scripts/bench.sh http`: the API under wrk beside pgbench, one row per workload and
/// connection count, each with a rate and its ratio to pgbench; the server it started
/// stopped cleanly (the script fails otherwise). A dev build, a second per point.
#[test]
fn bench_script_http_reports_every_workload_against_pgbench() {
    if !wrk_present() {
        return;
    }
    let _relinking = relinking_bench();
    let dir = TempDir::new("bench-http");
    // The test build's own service binary: the script's build of it would relink the one
    // the HTTP tests are running.
    let server = env!(concat!("CARGO_BIN_EXE_", env!("CARGO_PKG_NAME")));
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench.sh"))
        .args([
            "--dev",
            "http",
            "--duration",
            "1s",
            "--connections",
            "2",
            "--rounds",
            "2",
        ])
        .args(["--rows", "300", "--users", "30", "--json", "h.json"])
        .args(["--server", server])
        .current_dir(&dir.0)
        .env("DATABASE_URL", server_url().expose())
        .output()
        .expect("run scripts/bench.sh http");
    let table = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{table}{stderr}");
    let workloads = [
        "pgbench point read",
        "GET /tasks/{id}",
        "GET /users/{id}/tasks",
        "POST /tasks",
    ];
    for expected in ["requests/s", "spread", "p99 ms", "vs pgbench"]
        .iter()
        .chain(&workloads)
    {
        assert!(table.contains(expected), "{expected:?} not in\n{table}");
    }
    assert!(
        !stderr.contains("slow query"),
        "the bench's server warns about no slow query:\n{stderr}"
    );

    let json = std::fs::read_to_string(dir.0.join("h.json")).expect("h.json in the caller's dir");
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let results = report["results"].as_array().unwrap();
    for workload in workloads {
        let row = (results.iter())
            .find(|r| r["workload"] == workload && r["connections"] == 2)
            .unwrap_or_else(|| panic!("no {workload} at 2 connections in {json}"));
        assert!(row["requests_per_s"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["p99_ms"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["vs_pgbench"].as_f64().unwrap() > 0.0, "{row}");
        // The median of two rounds, both kept: the faster one (the upper middle).
        let rounds: Vec<f64> = (row["rounds"].as_array().unwrap().iter())
            .map(|r| r.as_f64().unwrap())
            .collect();
        assert_eq!(rounds.len(), 2, "{row}");
        let fastest = rounds.iter().copied().fold(0.0, f64::max);
        assert_eq!(row["requests_per_s"].as_f64().unwrap(), fastest, "{row}");
    }
}
