//! The root is the template: `cargo generate --path <root> --name X` (no subfolder) gives the
//! same application under the name X, with none of the template repository's own files, and
//! it builds, lints, migrates, seeds and passes its tests whatever kind of name X is.

mod common;
mod template;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestDb;
use template::{
    assert_seeded, assert_success, cargo, files_under, generate, have_cargo_generate, root, stdout,
};

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
    let root_manifest = manifest(&root().join("Cargo.toml"));
    let mut generated = manifest(&root().join("template/Cargo.toml"));
    let placeholder = format!("{}project-name{}", liquid_open(), "}".repeat(2));
    assert_eq!(
        generated["package"]["name"].as_str(),
        Some(placeholder.as_str())
    );
    assert_eq!(root_manifest["lib"]["name"].as_str(), Some("app"));
    // Everything else, dependencies and their features included, is the same.
    let name = root_manifest["package"]["name"].clone();
    generated["package"]
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
        "tests/template_generate.rs",
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
        assert!(
            !String::from_utf8_lossy(&text).contains(&liquid_open()),
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
            // The sources are the root's (checked above), so one name is enough for these.
            cargo(
                &project,
                &["clippy", "--all-targets", "--", "-D", "warnings"],
            );
            cargo(&project, &["fmt", "--check"]);
        }
        cargo(&project, &["build", "--all-targets"]);
        // The build renames the root's own entry in the copied Cargo.lock and keeps its pins.
        assert_eq!(
            locked(&project),
            locked(&root()),
            "{name}: Cargo.lock drifted"
        );

        let database = TestDb::not_created();
        let out = Command::new(project.join("scripts/init_db.sh"))
            .args(["--url", database.url.expose(), "--seed"])
            .env("CARGO_TARGET_DIR", template::target_dir())
            .output()
            .unwrap();
        assert_success(&format!("{name}: scripts/init_db.sh --seed"), &out);
        assert_seeded(&stdout(&out));

        let out = cargo(&project, &["test"]);
        let text = String::from_utf8_lossy(&out.stderr).into_owned() + &stdout(&out);
        assert!(text.contains("test result: ok"), "{name}: {text}");
    }
}
