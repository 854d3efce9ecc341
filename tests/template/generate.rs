//! The root is the template: `cargo generate --path <root> --name X` (no subfolder) gives the
//! same application under the name X, with none of the template repository's own files, and
//! it builds, lints, migrates, seeds and passes its tests whatever kind of name X is.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::{
    self, assert_seeded, assert_success, cargo, files_under, generate, have_cargo_generate, root,
    shared_target, stdout,
};
use crate::support::TestDb;

/// Liquid's opening braces, built rather than written: no Rust file of ours holds them.
fn liquid_open() -> String {
    "{".repeat(2)
}

/// The files `template/finish.rhai` puts in place of the root's own.
const REPLACED: &[&str] = &["Cargo.toml", "README.md", ".env.example"];

fn manifest(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).unwrap();
    text.parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn package_name(project: &Path) -> String {
    manifest(&project.join("Cargo.toml"))["package"]["name"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Every locked package but the project itself, as `name version`.
fn locked(project: &Path) -> Vec<String> {
    let own = package_name(project);
    let lock = manifest(&project.join("Cargo.lock"));
    let mut packages: Vec<String> = lock["package"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"].as_str() != Some(&own))
        .map(|p| {
            format!(
                "{} {}",
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap()
            )
        })
        .collect();
    packages.sort();
    packages
}

/// `cargo-generate.toml`'s ignore list: the template repository's own files.
fn ignored() -> Vec<PathBuf> {
    manifest(&root().join("cargo-generate.toml"))["template"]["ignore"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| PathBuf::from(v.as_str().unwrap()))
        .collect()
}

#[test]
fn the_generated_manifest_is_the_root_one_under_another_name() {
    let mut root_manifest = manifest(&root().join("Cargo.toml"));
    let mut generated = manifest(&root().join("template/Cargo.toml"));
    // The template checks' own dev-dependency (`toml`) stays behind; the application's
    // tests' dev-dependencies are the same in both.
    assert!(generated["dev-dependencies"].get("toml").is_none());
    let dev = root_manifest["dev-dependencies"].as_table_mut().unwrap();
    assert!(dev.remove("toml").is_some());
    let placeholder = format!("{}project-name{}", liquid_open(), "}".repeat(2));
    assert_eq!(
        generated["package"]["name"].as_str(),
        Some(placeholder.as_str())
    );
    assert_eq!(root_manifest["lib"]["name"].as_str(), Some("app"));
    // Everything else, dependencies and their features included, is the same.
    let name = root_manifest["package"]["name"].clone();
    // `cargo run` runs the service, named after the package.
    assert_eq!(root_manifest["package"]["default-run"], name);
    let package = generated["package"].as_table_mut().unwrap();
    assert_eq!(package["default-run"].as_str(), Some(placeholder.as_str()));
    package.insert("name".into(), name.clone());
    package.insert("default-run".into(), name.clone());
    // The service binary (`[[bin]]` for src/main.rs) is named after the package too.
    assert_eq!(
        generated["bin"][0]["name"].as_str(),
        Some(placeholder.as_str())
    );
    generated["bin"].as_array_mut().unwrap()[0]
        .as_table_mut()
        .unwrap()
        .insert("name".into(), name);
    assert_eq!(
        root_manifest, generated,
        "template/Cargo.toml has drifted from Cargo.toml: copy it over, keeping \
         name = {placeholder:?}"
    );
}

#[test]
fn a_generated_project_is_the_root_under_its_own_name_without_the_template_files() {
    if !have_cargo_generate() {
        return;
    }
    let project = generate("my-service", "layout");
    assert_eq!(package_name(&project), "my-service");

    for gone in [
        "cargo-generate.toml",
        "template",
        ".ci",
        "scripts/quickstart.sh",
        "scripts/test.sh",
        "tests/template",
        "tests/template/generate.rs",
    ] {
        assert!(!project.join(gone).exists(), "{gone} was generated");
    }
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    assert!(readme.starts_with("# my-service\n"), "{readme}");
    let env = std::fs::read_to_string(project.join(".env.example")).unwrap();
    assert!(env.contains("5432/my_service\n"), "{env}");

    // Every other file is the root's, byte for byte, and nothing of the application is left
    // behind: the root holds more only where cargo-generate.toml says so.
    let ignored = ignored();
    let skip = |rel: &Path| {
        rel.starts_with(".git")
            || rel.starts_with("template")
            || rel == Path::new("cargo-generate.toml")
            || ignored.iter().any(|i| rel.starts_with(i))
    };
    let expected = files_under(&root(), &skip);
    let generated = files_under(&project, &|_| false);
    let checks: Vec<_> = generated
        .iter()
        .filter(|p| p.to_string_lossy().starts_with("tests/template"))
        .collect();
    assert!(
        checks.is_empty(),
        "template checks were generated (add them to cargo-generate.toml's ignore): {checks:?}"
    );
    let mut want = expected.clone();
    want.extend(
        REPLACED
            .iter()
            .map(PathBuf::from)
            .filter(|p| !expected.contains(p)),
    );
    want.sort();
    assert_eq!(generated, want, "generated files differ from the root's");
    for rel in &generated {
        let text = std::fs::read(project.join(rel)).unwrap();
        // GitHub's `${{ expr }}` is not Liquid's: the workflow keeps it (Liquid never reads it).
        let text_str = String::from_utf8_lossy(&text).replace(&format!("${}", liquid_open()), "");
        assert!(
            !text_str.contains(&liquid_open()),
            "{} holds a Liquid placeholder",
            rel.display()
        );
        if !REPLACED.iter().any(|r| rel == Path::new(r)) {
            assert!(
                text == std::fs::read(root().join(rel)).unwrap(),
                "{} differs from the root's",
                rel.display()
            );
        }
    }
}

/// Each name style through the whole life of a project: build, lint, seed, test. One test,
/// run in turn: every project writes `target/debug/init_db` and the other binaries of the
/// shared target dir, so two at once would run each other's.
#[test]
fn every_name_style_builds_migrates_seeds_and_passes_its_tests() {
    if !have_cargo_generate() {
        return;
    }
    let _target = shared_target();
    for (name, package, crate_name) in [
        ("my-service", "my-service", "my_service"),
        ("my_service", "my_service", "my_service"),
        ("TaskHub", "task-hub", "task_hub"),
    ] {
        let project = generate(name, &format!("name-{name}"));
        assert_eq!(package_name(&project), package);
        let env = std::fs::read_to_string(project.join(".env.example")).unwrap();
        assert!(env.contains(&format!("5432/{crate_name}\n")), "{env}");
        if name == "my-service" {
            // The sources are the root's (checked above), so one name is enough for the CI
            // script: fmt, clippy, the migration checks and the tests, as a push runs them.
            passes_its_ci_and_fails_it_on_a_locking_index(&project);
        }
        cargo(&project, &["build", "--all-targets"]);
        // The build renames the root's own entry in the copied Cargo.lock and keeps its pins;
        // it only drops what the template checks' dev-dependency (toml) brought in.
        let pinned = locked(&root());
        let mut drifted = locked(&project);
        drifted.retain(|p| !pinned.contains(p));
        assert!(
            drifted.is_empty(),
            "{name}: Cargo.lock drifted: {drifted:?}"
        );

        let database = TestDb::not_created();
        let out = Command::new(project.join("scripts/init_db.sh"))
            .args(["--url", database.url.expose(), "--seed"])
            .env("CARGO_TARGET_DIR", helpers::target_dir())
            .output()
            .unwrap();
        assert_success(&format!("{name}: scripts/init_db.sh --seed"), &out);
        assert_seeded(&stdout(&out));

        if name != "my-service" {
            let out = cargo(&project, &["test"]);
            let text = String::from_utf8_lossy(&out.stderr).into_owned() + &stdout(&out);
            assert!(text.contains("test result: ok"), "{name}: {text}");
        }
    }
}

/// Steps of scripts/ci.sh, in order.
const CI_STEPS: &[&str] = &[
    "fmt",
    "clippy",
    "migrate lint",
    "migrate test",
    "migrate check",
    "cargo test",
];

/// scripts/ci.sh in `project` against a database of its own.
fn ci(project: &Path) -> std::process::Output {
    let database = TestDb::not_created();
    Command::new(project.join("scripts/ci.sh"))
        .env("CARGO_TARGET_DIR", helpers::target_dir())
        .env("DATABASE_URL", database.url.expose())
        .output()
        .unwrap()
}

/// The generated project's CI passes as generated; a migration that builds an index
/// without CONCURRENTLY on an existing table stops it at the lint step, which it names.
fn passes_its_ci_and_fails_it_on_a_locking_index(project: &Path) {
    let out = ci(project);
    assert_success("scripts/ci.sh in a generated project", &out);
    let text = stdout(&out);
    let started: Vec<&str> = (text.lines())
        .filter_map(|l| l.strip_prefix("==> ci: "))
        .collect();
    let mut want = CI_STEPS.to_vec();
    want.push("all steps passed");
    assert_eq!(started, want, "{text}");
    assert!(text.contains("test result: ok"), "{text}");

    let added = project.join("migrations/2099-01-01-000000_index_task_titles");
    std::fs::create_dir_all(&added).unwrap();
    std::fs::write(
        added.join("up.sql"),
        "CREATE INDEX tasks_title_idx ON tasks (title);\n",
    )
    .unwrap();
    std::fs::write(added.join("down.sql"), "DROP INDEX tasks_title_idx;\n").unwrap();
    let out = ci(project);
    std::fs::remove_dir_all(&added).unwrap();
    let (text, err) = (stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "a locking index passed CI:\n{text}");
    assert!(
        err.contains(r#"ci: FAILED at step "migrate lint""#),
        "{text}\n{err}"
    );
    assert!(text.contains("index_task_titles/up.sql"), "{text}");
    assert!(
        !text.contains("==> ci: migrate test"),
        "went on after the failure:\n{text}"
    );
}

/// The generated workflow: the root's byte for byte (Liquid never reads it, so GitHub's
/// `${{ }}` survive), clean under actionlint, and its last step is scripts/ci.sh.
#[test]
fn the_generated_workflow_passes_actionlint_and_runs_the_ci_script_last() {
    if !have_cargo_generate() || !helpers::have(&["actionlint"], "REQUIRE_ACTIONLINT") {
        return;
    }
    let project = generate("my-service", "workflow");
    let workflow = project.join(".github/workflows/ci.yml");
    let text = std::fs::read_to_string(&workflow).unwrap();
    assert!(text.contains("${{ github.ref }}"), "{text}");
    assert!(project.join(".github/dependabot.yml").is_file());
    let out = Command::new("actionlint").arg(&workflow).output().unwrap();
    assert_success("actionlint .github/workflows/ci.yml", &out);
    let last_step = text.rsplit("\n      - ").next().unwrap();
    assert!(
        last_step.lines().any(|l| l.trim() == "run: scripts/ci.sh"),
        "the last step is not scripts/ci.sh:\n{last_step}"
    );

    // actionlint can fail: a workflow it must refuse.
    let broken = project.join("target-broken.yml");
    std::fs::write(&broken, text.replace("github.ref", "github.no_such_field")).unwrap();
    let out = Command::new("actionlint").arg(&broken).output().unwrap();
    assert!(!out.status.success(), "{}", stdout(&out));
}
