//! The first must-show of `migrate generate model`: in a freshly generated project,
//! the command docs/first-model.md shows first, then the project's own `scripts/ci.sh`
//! (fmt, clippy, lint, migrate test, migrate check, cargo test with the new tests) passes;
//! with a second model made with `--bulk` beside it.

use std::process::Command;

use crate::docs::{Leftovers, foreign_settings, share_target};
use crate::helpers::{assert_success, generate, have, have_cargo_generate, shared_target};
use crate::support::TestDb;

#[test]
fn a_generated_model_passes_the_generated_projects_ci() {
    if !have_cargo_generate() || !have(&["diesel"], "REQUIRE_DIESEL_CLI") {
        return;
    }
    let _target = shared_target();
    let project = generate("scaffold-app", "scaffold");
    share_target(&project);
    let db = TestDb::not_created();
    let unset = foreign_settings();
    let run = |program: &str, args: &[&str]| {
        let mut command = Command::new(project.join(program));
        command.args(args).current_dir(&project);
        for name in &unset {
            command.env_remove(name);
        }
        command.output().unwrap()
    };
    // The project's database, at head; init_db.sh writes it to .env, where the scripts find it.
    let init = run("scripts/init_db.sh", &["--url", db.url.expose()]);
    assert_success("scripts/init_db.sh", &init);
    let _leftovers = Leftovers {
        project: project.clone(),
        crate_name: "scaffold_app".into(),
    };

    let generated = run(
        "scripts/migrate.sh",
        &[
            "generate",
            "model",
            "project",
            "name:string:120",
            "owner:references:users",
            "due:date?",
            "status:enum(open,closed)",
            "--timestamps",
            "--soft-delete",
        ],
    );
    assert_success("migrate generate model", &generated);
    let said = String::from_utf8_lossy(&generated.stdout);
    assert!(said.contains("printed src/schema.rs again"), "{said}");
    let schema = std::fs::read_to_string(project.join("src/schema.rs")).unwrap();
    assert!(schema.contains("projects (id)"), "{schema}");
    // The patch still applied: the tasks checklist stays Array<Text>.
    assert!(schema.contains("checklist -> Array<Text>,"));

    // A second model with every kind of column `--bulk` lays out, a reference to the first
    // among them: its BulkRow impl in src/bulk/rows.rs, and its test, go through ci.sh too.
    let bulk = run(
        "scripts/migrate.sh",
        &[
            "generate",
            "model",
            "line_item",
            "name:string:40:unique",
            "note:text?",
            "qty:int",
            "paid:bool",
            "at:timestamptz?",
            "code:uuid:unique",
            "meta:jsonb?",
            "labels:text[]",
            "state:enum(open,closed)",
            "kind:enum(a,b)?",
            "owner:references:users:cascade",
            "project:references:projects?:set-null",
            "--bulk",
        ],
    );
    assert_success("migrate generate model --bulk", &bulk);
    let rows = std::fs::read_to_string(project.join("src/bulk/rows.rs")).unwrap();
    assert!(rows.contains("impl BulkRow for NewLineItem<'_>"), "{rows}");

    let ci = run("scripts/ci.sh", &[]);
    assert_success("scripts/ci.sh after generate model", &ci);
    let out = String::from_utf8_lossy(&ci.stdout);
    assert!(out.contains("==> ci: all steps passed"), "{out}");
}
