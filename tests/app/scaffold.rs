//! `migrate generate model` run as a user runs it, in a temp copy of the project files it
//! reads: `--dry-run` prints and writes nothing, each refusal writes nothing, and without a
//! database it writes the files and says the commands to run.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::{TempDir, stderr, stdout};

/// The project files the generator reads or edits, copied into a temp folder.
fn project() -> TempDir {
    let dir = TempDir::new("scaffold");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in [
        "src/schema.rs",
        "src/schema.patch",
        "diesel.toml",
        "tests/app/main.rs",
    ] {
        let to = dir.0.join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(root.join(file), to).unwrap();
    }
    for folder in ["src/models", "migrations"] {
        copy_tree(&root.join(folder), &dir.0.join(folder));
    }
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Every file under `dir` with its content, to compare before and after.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// `migrate generate model ARGS` in `dir`, with no database anywhere.
fn generate(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_migrate"))
        .args(["generate", "model"])
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("DATABASE_DIRECT_URL")
        .output()
        .expect("run migrate")
}

/// The issue's example under a name no project is likely to have taken already.
const ISSUE: &[&str] = &[
    "sample_widget",
    "name:string:120",
    "owner:references:users",
    "due:date?",
    "status:enum(open,closed)",
    "--timestamps",
    "--soft-delete",
];

#[test]
fn dry_run_prints_every_file_and_edit_and_writes_nothing() {
    let dir = project();
    let before = snapshot(&dir.0);
    let out = generate(&dir.0, &[ISSUE, &["--dry-run"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for part in [
        "_create_sample_widgets/up.sql\n",
        "CREATE TYPE sample_widget_status AS ENUM ('open', 'closed');",
        "_create_sample_widgets/down.sql\nDROP TABLE sample_widgets;\nDROP TYPE sample_widget_status;\n",
        "==> would write src/models/sample_widget.rs\n",
        "pub async fn list(",
        "Result<Page<SampleWidget>>",
        "==> would write tests/app/sample_widgets.rs\n",
        "==> would edit src/models/mod.rs: `pub mod sample_widget;`",
        "==> would edit tests/app/main.rs: `mod sample_widgets;`",
        "dry run: nothing written",
    ] {
        assert!(text.contains(part), "{part:?} not in:\n{text}");
    }
    assert_eq!(snapshot(&dir.0), before, "--dry-run wrote something");
}

#[test]
fn each_refusal_says_why_and_writes_nothing() {
    let dir = project();
    let before = snapshot(&dir.0);
    for (args, says) in [
        (&["task", "name:text"][..], "table `tasks` exists already"),
        (&["tag", "name:text"], "table `tags` exists already"),
        (&["bug", "name:text"], "`bugs`"),
        (
            &["page", "name:text", "--table", "pages"],
            "src/models/page.rs exists already",
        ),
        (&["role", "name:text"], "already exports a `Role`"),
        (&["type", "name:text"], "Rust keyword"),
        (&["Project", "name:text"], "snake_case"),
        (&["status", "name:text"], "--table"),
        (&["sample_widget", "type:text"], "Rust keyword"),
        (&["sample_widget", "id:bigint"], "writes `id` itself"),
        (&["sample_widget", "a:text", "a:int"], "given twice"),
        (&["sample_widget", "name:varchar"], "unknown type `varchar`"),
        (&["sample_widget", "name:string:0"], "1 to 10485760"),
        (&["sample_widget", "name:string:abc"], "1 to 10485760"),
        (
            &["sample_widget", "owner:references:people"],
            "does not have",
        ),
        (
            &["sample_widget", "owner:references:users:set-null"],
            "nullable reference",
        ),
        (
            &["sample_widget", "parent:references:sample_widgets"],
            "make it nullable",
        ),
        (
            &["sample_widget", "tags:text[]?", "--bulk"],
            "nullable text[]",
        ),
        (
            &[
                "sample_widget",
                "a:int",
                "b:int",
                "c:int",
                "d:int",
                "e:int",
                "f:int",
                "g:int",
                "h:int",
                "i:int",
                "j:int",
                "k:int",
                "l:int",
                "m:int",
                "n:int",
                "o:int",
                "--timestamps",
            ],
            "18 columns",
        ),
    ] {
        let out = generate(&dir.0, args);
        assert!(
            !out.status.success(),
            "{args:?} was accepted:\n{}",
            stdout(&out)
        );
        let err = stderr(&out);
        assert!(err.contains(says), "{args:?}: {says:?} not in:\n{err}");
        assert_eq!(snapshot(&dir.0), before, "{args:?} wrote something");
    }
}

#[test]
fn without_a_database_it_writes_the_files_and_says_what_to_run() {
    let dir = project();
    let out = generate(&dir.0, ISSUE);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("wrote src/models/sample_widget.rs"), "{text}");
    assert!(text.contains("scripts/migrate.sh upgrade"), "{text}");
    assert!(
        text.contains("diesel print-schema > src/schema.rs"),
        "{text}"
    );
    let models = std::fs::read_to_string(dir.0.join("src/models/mod.rs")).unwrap();
    assert!(models.contains("pub mod sample_widget;\n"), "{models}");
    assert!(
        models.contains("pub use sample_widget::{") && models.contains("SampleWidgetStatus"),
        "{models}"
    );
    assert!(dir.0.join("tests/app/sample_widgets.rs").is_file());
    // Now the table exists in a migration: the same command is refused.
    let before = snapshot(&dir.0);
    let again = generate(&dir.0, ISSUE);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already creates a table `sample_widgets`"),
        "{}",
        stderr(&again)
    );
    assert_eq!(snapshot(&dir.0), before);
}
