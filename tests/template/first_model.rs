//! docs/first-model.md, followed step by step in a freshly generated project: its commands
//! run, its code blocks are written where their info string says (```` ```rust
//! tests/app/notes.rs ````), and then the project's whole test suite passes with the new
//! table.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::helpers::{
    self, assert_success, cargo, generate, have, have_cargo_generate, shared_target,
};
use crate::support::TestDb;

/// The code blocks of a Markdown text whose info string names a target, as
/// `(target, text)`: ```` ```sql up.sql ```` gives `("up.sql", ...)`.
fn blocks(doc: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .collect();
        if let Some(target) = info.split_whitespace().nth(1) {
            found.push((target.to_owned(), body.join("\n") + "\n"));
        }
    }
    found
}

/// Runs one of the project's scripts against `url`, failing with its output.
fn script(project: &Path, url: &str, name: &str, args: &[&str]) -> Output {
    let out = Command::new(project.join("scripts").join(name))
        .args(args)
        .args(["--url", url])
        .env("CARGO_TARGET_DIR", helpers::target_dir())
        .current_dir(project)
        .output()
        .expect("run a project script");
    assert_success(&format!("scripts/{name} {args:?}"), &out);
    out
}

/// `main` (the app test program's root) with the `mod` line `line` among its topic modules,
/// the last run of `mod` lines, in the order cargo fmt keeps them.
fn with_module(main: &str, line: &str) -> String {
    let mut lines: Vec<&str> = main.lines().collect();
    let end = 1 + lines.iter().rposition(|l| l.starts_with("mod ")).unwrap();
    let start = lines[..end]
        .iter()
        .rposition(|l| !l.starts_with("mod "))
        .map_or(0, |i| i + 1);
    let at = (start..end).find(|&i| lines[i] > line).unwrap_or(end);
    lines.insert(at, line);
    lines.join("\n") + "\n"
}

fn folder_ending(dir: &Path, suffix: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

#[test]
fn the_first_model_walkthrough_works_in_a_generated_project() {
    if !have_cargo_generate() || !have(&["diesel"], "REQUIRE_DIESEL_CLI") {
        return;
    }
    let _target = shared_target();
    let project = generate("notes-app", "first-model");
    let doc = std::fs::read_to_string(project.join("docs/first-model.md")).unwrap();
    let blocks = blocks(&doc);
    let block = |target: &str| {
        let found = blocks.iter().find(|(t, _)| t == target);
        found
            .unwrap_or_else(|| panic!("docs/first-model.md has no {target} block"))
            .1
            .clone()
    };
    let db = TestDb::not_created();
    let url = db.url.expose().to_owned();
    // The project's database, at head before the new model.
    script(&project, &url, "init_db.sh", &[]);

    // 1. The migration.
    script(&project, &url, "migrate.sh", &["create", "add notes"]);
    let migration = folder_ending(&project.join("migrations"), "_add_notes");
    std::fs::write(migration.join("up.sql"), block("up.sql")).unwrap();
    std::fs::write(migration.join("down.sql"), block("down.sql")).unwrap();

    // 2. Apply and check it.
    for verb in ["upgrade", "lint", "test"] {
        script(&project, &url, "migrate.sh", &[verb]);
    }

    // 3. src/schema.rs from the database.
    let printed = Command::new("diesel")
        .args(["print-schema", "--database-url", &url])
        .current_dir(&project)
        .output()
        .unwrap();
    assert_success("diesel print-schema", &printed);
    std::fs::write(project.join("src/schema.rs"), &printed.stdout).unwrap();

    // 4-6. The model, its registration, its test.
    std::fs::write(
        project.join("src/models/note.rs"),
        block("src/models/note.rs"),
    )
    .unwrap();
    let models = project.join("src/models/mod.rs");
    let registered = std::fs::read_to_string(&models).unwrap() + "\n" + &block("src/models/mod.rs");
    std::fs::write(&models, registered).unwrap();
    std::fs::write(
        project.join("tests/app/notes.rs"),
        block("tests/app/notes.rs"),
    )
    .unwrap();
    let main = project.join("tests/app/main.rs");
    let with_notes = with_module(
        &std::fs::read_to_string(&main).unwrap(),
        block("tests/app/main.rs").trim(),
    );
    std::fs::write(&main, with_notes).unwrap();
    script(&project, &url, "migrate.sh", &["check"]);

    let out = cargo(&project, &["test"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("test notes::notes_are_written_read_back_and_checked ... ok"),
        "{text}"
    );
    assert!(!text.contains("FAILED"), "{text}");
}
