//! The benchmark command runs end to end (small, unoptimised: tests never assert timings)
//! and writes the JSON shape the docs describe.

mod common;

use std::process::Command;

use common::{TempDir, server_url};

#[test]
fn bench_prints_the_table_and_writes_json() {
    let dir = TempDir::new("bench");
    let json = dir.0.join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args([
            "--rows",
            "2000",
            "--users",
            "50",
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
    assert!(
        stdout.contains("vs best") && stdout.contains("vs floor"),
        "{stdout}"
    );

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
}
