//! No libpq: diesel-async talks to PostgreSQL through tokio-postgres, so neither the
//! dependency graph nor the binaries carry pq-sys or libpq. A fresh machine needs Rust and a
//! server, nothing else.

use std::process::Command;

#[test]
fn neither_the_dependency_graph_nor_the_binaries_use_libpq() {
    let tree = Command::new(env!("CARGO"))
        .args(["tree", "--invert", "pq-sys", "--edges", "normal,build"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    let graph = String::from_utf8_lossy(&tree.stdout);
    let error = String::from_utf8_lossy(&tree.stderr);
    // cargo tree refuses to invert a package that is not in the graph: that is the pass.
    assert!(
        !tree.status.success() && error.contains("did not match any packages"),
        "pq-sys is in the dependency graph:\n{graph}{error}"
    );

    let ldd = Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_init_db"))
        .output()
        .expect("run ldd");
    let libraries = String::from_utf8_lossy(&ldd.stdout);
    assert!(ldd.status.success(), "ldd failed: {libraries}");
    assert!(!libraries.contains("libpq"), "{libraries}");
}
