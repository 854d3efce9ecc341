//! `scripts/bench.sh` finds a server and runs the benchmark, passing its arguments through
//! (a dev build here: the numbers are not the point). The script's `cargo run` relinks
//! `target/debug/bench`, which other tests run: it holds `relinking_bench` meanwhile.

use std::process::Command;

use crate::support::{TempDir, relinking_bench, server_url};

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
