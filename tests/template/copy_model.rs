//! The second way to use the template: copy one model from this checkout into a project that
//! already exists, following docs/advanced-models.md ("Copying a model into another
//! project"), and it migrates, builds and works there with nothing else from the template.

use std::path::Path;
use std::process::Command;

use crate::helpers::{assert_success, cargo_with, have, root, shared_target};
use crate::support::TestDb;

/// The dependencies the user model and `error.rs` need, as our manifest pins them.
const DEPENDENCIES: &[&str] = &[
    "diesel",
    "diesel-async",
    "deadpool",
    "chrono",
    "serde",
    "serde_json",
    "uuid",
    "thiserror",
    "tokio",
];

/// The user model's migrations: the setup one (its trigger helper) and every `users` step.
fn is_user_migration(folder: &str) -> bool {
    folder == "00000000000000_diesel_initial_setup" || folder.contains("_users")
}

/// A bare project's lib.rs, with the copied files as the doc says: `db::committed` and
/// `db::fns` declared inline, since this project has no `db` module of its own.
const LIB_RS: &str = "pub mod db {\n    pub mod committed;\n    pub mod fns;\n    \
                      pub use committed::CommittedDsl;\n}\npub mod error;\npub mod schema;\n\
                      pub mod user;\n\npub use error::{Error, Result};\n";

const TEST_RS: &str = r#"use diesel_async::{AsyncConnection, AsyncPgConnection};
use existing_app::user::{Email, NewUser, User};
use existing_app::Error;

#[tokio::test]
async fn the_copied_user_model_writes_reads_and_reports_conflicts() {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    let email = Email::parse("ada@example.org").unwrap();
    let new = NewUser { email: &email, display_name: "Ada" };
    let ada = User::create(&conn, &new).await.unwrap();
    assert_eq!(User::find(&conn, ada.id).await.unwrap(), ada);
    let same = Email::parse("ADA@example.org").unwrap();
    let again = User::create(&conn, &NewUser { email: &same, display_name: "Ada" }).await;
    assert!(matches!(again, Err(Error::Conflict { .. })), "{again:?}");
}
"#;

fn diesel(dir: &Path, url: &str, args: &[&str]) -> std::process::Output {
    Command::new("diesel")
        .args(args)
        .arg("--database-url")
        .arg(url)
        .current_dir(dir)
        .output()
        .expect("run diesel (install: cargo install diesel_cli --no-default-features --features postgres --locked)")
}

#[test]
fn the_user_model_copied_into_a_bare_project_migrates_builds_and_works() {
    // The documented recipe runs diesel_cli.
    if !have(&["diesel"], "REQUIRE_DIESEL_CLI") {
        return;
    }
    let _target = shared_target();
    let source = root();
    let app = source.join("target/generated/copy-app");
    let _ = std::fs::remove_dir_all(&app);
    for dir in ["src", "tests", "migrations"] {
        std::fs::create_dir_all(app.join(dir)).unwrap();
    }

    // An existing project: its own manifest, lib.rs and diesel.toml.
    let manifest = std::fs::read_to_string(source.join("Cargo.toml")).unwrap();
    let mut deps = String::new();
    for name in DEPENDENCIES {
        let line = manifest
            .lines()
            .find(|l| l.starts_with(&format!("{name} = ")))
            .unwrap_or_else(|| panic!("{name} is not in Cargo.toml"));
        deps.push_str(line);
        deps.push('\n');
    }
    std::fs::write(
        app.join("Cargo.toml"),
        format!(
            "[package]\nname = \"existing-app\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\
             publish = false\n\n[dependencies]\n{deps}"
        ),
    )
    .unwrap();
    // The same versions as ours, so the shared target dir is reused.
    std::fs::copy(source.join("Cargo.lock"), app.join("Cargo.lock")).unwrap();
    std::fs::write(app.join("src/lib.rs"), LIB_RS).unwrap();
    std::fs::write(app.join("tests/user.rs"), TEST_RS).unwrap();
    std::fs::write(
        app.join("diesel.toml"),
        "[print_schema]\nfile = \"src/schema.rs\"\n",
    )
    .unwrap();

    // The recipe: the model file, error.rs, the SQL functions it calls and its migrations.
    std::fs::copy(source.join("src/models/user.rs"), app.join("src/user.rs")).unwrap();
    std::fs::copy(source.join("src/error.rs"), app.join("src/error.rs")).unwrap();
    std::fs::create_dir_all(app.join("src/db")).unwrap();
    std::fs::copy(source.join("src/db/fns.rs"), app.join("src/db/fns.rs")).unwrap();
    let committed = source.join("src/db/committed.rs");
    std::fs::copy(committed, app.join("src/db/committed.rs")).unwrap();
    let mut copied = 0;
    for entry in std::fs::read_dir(source.join("migrations")).unwrap() {
        let from = entry.unwrap().path();
        let folder = from.file_name().unwrap().to_str().unwrap().to_owned();
        if !is_user_migration(&folder) {
            continue;
        }
        let to = app.join("migrations").join(&folder);
        std::fs::create_dir_all(&to).unwrap();
        for file in std::fs::read_dir(&from).unwrap() {
            let file = file.unwrap().path();
            std::fs::copy(&file, to.join(file.file_name().unwrap())).unwrap();
        }
        copied += 1;
    }
    assert!(
        copied >= 2,
        "expected the setup and users migrations, copied {copied}"
    );

    // Run the migrations, then print the schema, as the doc says.
    let database = TestDb::not_created();
    let url = database.url.expose().to_owned();
    assert_success("diesel setup", &diesel(&app, &url, &["setup"]));
    let schema = diesel(&app, &url, &["print-schema"]);
    assert_success("diesel print-schema", &schema);
    std::fs::write(app.join("src/schema.rs"), &schema.stdout).unwrap();
    let printed = String::from_utf8_lossy(&schema.stdout);
    assert!(printed.contains("users (id)"), "{printed}");

    // Builds with nothing else from the template, and works against the database.
    cargo_with(&app, &["test", "--quiet"], &[("DATABASE_URL", &url)]);
}
