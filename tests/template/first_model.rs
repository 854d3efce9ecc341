//! docs/first-model.md, followed step by step in a freshly generated project: its `sh`
//! blocks run in order (as `docs.rs` runs the other pages), its code blocks are written where
//! their info string says (```` ```rust tests/app/notes.rs ````), and the page's own
//! `scripts/ci.sh` passes twice: with the new model, and after the `Bug` example is removed.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::docs::{Leftovers, foreign_settings, share_target};
use crate::helpers::{assert_success, generate, have, have_cargo_generate, shared_target};
use crate::runbook::{self, Kind};
use crate::support::TestDb;

/// `source` with `line` inserted in alphabetical order into the last run of lines that
/// start with `kind` (`mod `, `pub use `), where cargo fmt keeps it. A line of a multi-line
/// item never starts with `kind`, so the insertion falls between items.
fn with_line(source: &str, line: &str, kind: &str) -> String {
    let mut lines: Vec<&str> = source.lines().collect();
    let is_kind = |l: &str| l.starts_with(kind);
    let last = lines.iter().rposition(|l| is_kind(l)).unwrap();
    // The run: back to the first line of the kind after a blank line or other item.
    let start = lines[..=last]
        .iter()
        .rposition(|l| l.trim().is_empty() || l.starts_with("//") || l.starts_with('#'))
        .map_or(0, |i| i + 1);
    let at = (start..=last)
        .find(|&i| is_kind(lines[i]) && lines[i] > line)
        .unwrap_or(last + 1);
    let at = if at == last + 1 {
        // After the last item of the run, which may span several lines.
        (last + 1..lines.len())
            .find(|&i| lines[i - 1].ends_with(';'))
            .unwrap_or(lines.len())
    } else {
        at
    };
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
    share_target(&project);
    let db = TestDb::not_created();
    // The project's database, at head before the new model; init_db.sh writes it to .env,
    // where the page's commands find it.
    let init = Command::new(project.join("scripts/init_db.sh"))
        .args(["--url", db.url.expose()])
        .current_dir(&project)
        .output()
        .unwrap();
    assert_success("scripts/init_db.sh", &init);
    let _leftovers = Leftovers {
        project: project.clone(),
        crate_name: "notes_app".into(),
    };

    let doc = std::fs::read_to_string(project.join("docs/first-model.md")).unwrap();
    let unset = foreign_settings();
    let unset: Vec<&str> = unset.iter().map(String::as_str).collect();
    let mut ci_runs = 0;
    for block in runbook::blocks("docs/first-model.md", &doc) {
        match block.kind().unwrap_or_else(|e| panic!("{e}")) {
            Kind::Run => {
                eprintln!("first-model: running line {}", block.line);
                runbook::run(&project, &block, &[], &unset).unwrap_or_else(|e| panic!("{e}"));
                ci_runs += block.text.contains("scripts/ci.sh") as usize;
            }
            Kind::Skip(_) => {}
            Kind::Other => {
                if let Some(target) = block.info.split_whitespace().nth(1) {
                    write_block(&project, target, &block.text);
                }
            }
        }
    }
    // Once after the new model, once after the example model was removed.
    assert_eq!(ci_runs, 2, "docs/first-model.md runs scripts/ci.sh twice");
    assert!(project.join("src/models/note.rs").exists());
    assert!(!project.join("src/models/bug.rs").exists());
    let schema = std::fs::read_to_string(project.join("src/schema.rs")).unwrap();
    assert!(schema.contains("notes (id)") && !schema.contains("bugs (task_id)"));
}

/// Writes a code block where its info string says: a migration file into the newest folder
/// whose name ends as the target's folder part (`up.sql` into `*_add_notes`,
/// `drop_bugs/up.sql` into `*_drop_bugs`), a `mod` line into its run of lines, anything
/// else as a file of the project.
fn write_block(project: &Path, target: &str, text: &str) {
    let migrations = project.join("migrations");
    match target {
        "up.sql" | "down.sql" => {
            let folder = folder_ending(&migrations, "_add_notes");
            std::fs::write(folder.join(target), text).unwrap();
        }
        _ if target.ends_with(".sql") => {
            let (name, file) = target.split_once('/').unwrap();
            let folder = folder_ending(&migrations, &format!("_{name}"));
            std::fs::write(folder.join(file), text).unwrap();
        }
        "src/models/mod.rs" => {
            let path = project.join(target);
            let mut source = std::fs::read_to_string(&path).unwrap();
            for line in text.lines() {
                let kind = if line.starts_with("pub mod ") {
                    "pub mod "
                } else {
                    "pub use "
                };
                source = with_line(&source, line, kind);
            }
            std::fs::write(&path, source).unwrap();
        }
        "tests/app/main.rs" => {
            let path = project.join(target);
            let source = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, with_line(&source, text.trim(), "mod ")).unwrap();
        }
        _ => std::fs::write(project.join(target), text).unwrap(),
    }
}
