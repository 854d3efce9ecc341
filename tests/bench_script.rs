//! `scripts/bench.sh` generates the project, finds a server and runs its benchmark,
//! passing arguments through (a dev build here: the numbers are not the point).

use std::process::Command;

use diesel_template_harness::{assert_success, build_lock, repo_root, stdout};

#[test]
fn bench_script_prints_the_table_and_writes_json_where_asked() {
    let _lock = build_lock();
    let dir = repo_root().join("target/generated/bench-out");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(repo_root().join("scripts/bench.sh"))
        .args([
            "--dev", "--rows", "300", "--users", "30", "--json", "b.json",
        ])
        .current_dir(&dir)
        .output()
        .expect("run scripts/bench.sh");
    assert_success("scripts/bench.sh", &out);
    let table = stdout(&out);
    for expected in ["workload", "copy", "unnest", "eager", "naive"] {
        assert!(table.contains(expected), "{expected:?} not in\n{table}");
    }
    // Relative to where the script ran, not to the generated project.
    let json = std::fs::read_to_string(dir.join("b.json")).expect("b.json in the caller's dir");
    let compact: String = json.split_whitespace().collect();
    assert!(compact.contains("\"rows\":300"), "{json}");
    assert!(compact.contains("\"technique\":\"copy\""), "{json}");
}
