//! The generated project builds, lints, formats, documents and passes its own tests, links
//! no libpq, and works for every kind of name cargo-generate accepts.

use std::process::Command;

use diesel_template_harness::{
    assert_success, build_lock, cargo, cargo_with, generate, stdout, target_dir,
};

#[test]
fn generated_project_builds_lints_formats_documents_and_passes_its_tests() {
    let _lock = build_lock();
    let project = generate("my-service", "main");
    cargo(&project, &["build", "--all-targets"]);
    cargo(
        &project,
        &["clippy", "--all-targets", "--", "-D", "warnings"],
    );
    cargo(&project, &["fmt", "--check"]);
    // Docs are part of the product: broken intra-doc links fail like lints do.
    cargo_with(
        &project,
        &["doc", "--no-deps", "--lib"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    );
    let out = cargo(&project, &["test"]);
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &stdout(&out);
    assert!(text.contains("test result: ok"), "{text}");

    // No libpq: neither in the dependency graph nor in the binaries.
    let tree = Command::new("cargo")
        .args(["tree", "--invert", "pq-sys", "--edges", "normal,build"])
        .current_dir(&project)
        .output()
        .unwrap();
    assert!(
        !stdout(&tree).contains("pq-sys"),
        "pq-sys is in the dependency graph:\n{}",
        stdout(&tree)
    );
    let binary = target_dir().join("debug/init_db");
    let ldd = Command::new("ldd").arg(&binary).output().expect("run ldd");
    assert_success("ldd", &ldd);
    assert!(!stdout(&ldd).contains("libpq"), "{}", stdout(&ldd));
}

#[test]
fn every_name_style_generates_a_project_that_compiles() {
    let _lock = build_lock();
    for (name, crate_name) in [("my_service", "my_service"), ("TaskHub", "task_hub")] {
        let project = generate(name, &format!("name-{crate_name}"));
        let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \""), "{manifest}");
        cargo(&project, &["check", "--all-targets"]);
        let lib = std::fs::read_to_string(project.join("src/bin/init_db.rs")).unwrap();
        assert!(
            lib.contains(&format!("use {crate_name}::")),
            "crate name {crate_name} expected"
        );
    }
}
