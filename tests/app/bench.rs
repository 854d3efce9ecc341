//! The benchmark command runs end to end (small, unoptimised: tests never assert timings)
//! and writes the JSON shape the docs describe.

use std::process::Command;

use crate::support::{self, TempDir, running_bench, server_url};

#[test]
fn bench_prints_the_table_and_writes_json() {
    let _bench = running_bench();
    let dir = TempDir::new("bench");
    let json = dir.0.join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args([
            "--rows",
            "2000",
            "--users",
            "50",
            "--seconds",
            "1",
            "--clients",
            "1,3",
            "--rounds",
            "2",
            "--stream-rows",
            "3000",
            "--json",
            json.to_str().unwrap(),
        ])
        .args(["--url", server_url().expose()])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for header in ["vs best", "vs floor", "vs pgbench", "peak MiB"] {
        assert!(stdout.contains(header), "{header} missing from\n{stdout}");
    }

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["rows"], 2000);
    let results = report["results"].as_array().unwrap();
    let find = |workload: &str, technique: &str| {
        results
            .iter()
            .find(|r| r["workload"] == workload && r["technique"] == technique)
            .unwrap_or_else(|| panic!("no {workload}/{technique} in {report}"))
    };
    for technique in ["row_by_row", "batched", "unnest", "copy"] {
        assert!(find("insert", technique)["seconds"].as_f64().unwrap() > 0.0);
    }
    for (workload, technique) in [
        ("upsert", "unnest"),
        ("update", "unnest"),
        ("delete", "any_array"),
    ] {
        assert!(find(workload, technique)["seconds"].is_f64());
        // Each bulk workload is measured against the server doing it alone.
        assert!(find(workload, "server_floor")["seconds"].as_f64().unwrap() > 0.0);
    }
    assert!(find("insert", "server_floor")["seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(find("load", "eager")["queries"], 3);
    assert_eq!(find("load", "joined")["queries"], 1);
    assert_eq!(
        find("load", "naive")["queries"],
        1 + 50 + 2000,
        "1 + users + tasks"
    );
    // Four reads per user, whether sent one by one or together.
    for technique in ["sequential", "pipelined"] {
        assert_eq!(find("dashboard", technique)["queries"], 4 * 50);
    }

    // OLTP: ours at each client count, with throughput and latency percentiles; the
    // rounds collapse into one row (the median) per technique and count.
    let pgbench = support::pg_binaries_present();
    for workload in ["point_read", "oltp_txn"] {
        for clients in [1, 3] {
            let mut techniques = vec!["model_api"];
            if pgbench {
                techniques.push("pgbench");
            }
            for technique in techniques {
                let rows: Vec<_> = (results.iter())
                    .filter(|r| {
                        r["workload"] == workload
                            && r["technique"] == technique
                            && r["clients"] == clients
                    })
                    .collect();
                let [m] = rows[..] else {
                    panic!("one {workload}/{technique}/C={clients} expected: {rows:?}");
                };
                assert_eq!(m["rounds"], 2, "{m}");
                assert!(m["ops_per_s"].as_f64().unwrap() > 0.0, "{m}");
                let (p50, p99) = (m["p50_ms"].as_f64().unwrap(), m["p99_ms"].as_f64().unwrap());
                assert!(0.0 < p50 && p50 <= p99, "{m}");
            }
        }
    }

    // The streamed insert: three sizes, each with its floor; the copy reports its memory.
    for rows in [30, 300, 3000] {
        let at = |technique: &str| {
            results
                .iter()
                .find(|r| {
                    r["workload"] == "insert_stream"
                        && r["technique"] == technique
                        && r["rows"] == rows
                })
                .unwrap_or_else(|| panic!("no insert_stream/{technique} at {rows}"))
        };
        assert!(at("copy_iter")["peak_rss_mib"].as_f64().unwrap() > 1.0);
        assert!(at("server_floor")["seconds"].as_f64().unwrap() > 0.0);
    }
}

/// `--workloads` narrows a run to what it names; an unknown name is refused up front.
#[test]
fn bench_runs_only_the_workloads_asked_for() {
    let _bench = running_bench();
    let dir = TempDir::new("bench-narrow");
    let json = dir.0.join("bench.json");
    let run = |workloads: &str| {
        Command::new(env!("CARGO_BIN_EXE_bench"))
            .args([
                "--rows",
                "500",
                "--users",
                "10",
                "--seconds",
                "1",
                "--clients",
                "2",
            ])
            .args(["--workloads", workloads, "--json", json.to_str().unwrap()])
            .args(["--url", server_url().expose()])
            .env_remove("DATABASE_URL")
            .output()
            .unwrap()
    };
    let out = run("upsert,point_read");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let mut workloads: Vec<&str> = (report["results"].as_array().unwrap().iter())
        .map(|r| r["workload"].as_str().unwrap())
        .collect();
    workloads.dedup();
    assert_eq!(workloads, ["upsert", "point_read"]);

    let out = run("inserts");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("insert_stream"),
        "the valid names are listed: {stderr}"
    );
}
