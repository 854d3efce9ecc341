//! Embeds `migrations/` into the binaries: one entry per migration folder, its files read with
//! `include_str!` so Cargo rebuilds when any of them changes.

use std::fmt::Write;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut folders: Vec<_> = std::fs::read_dir(&dir)
        .expect("read migrations/")
        .map(|e| e.expect("read migrations/").path())
        .filter(|p| p.join("up.sql").is_file())
        .collect();
    folders.sort();
    let mut out = String::from("&[\n");
    for folder in folders {
        println!("cargo:rerun-if-changed={}", folder.display());
        let file = |name: &str| {
            let path = folder.join(name);
            if path.is_file() {
                format!("Some(include_str!({:?}))", path.display().to_string())
            } else {
                "None".to_owned()
            }
        };
        let name = folder.file_name().unwrap().to_string_lossy().into_owned();
        // The braces as arguments, not escaped in the format string: doubled braces read as
        // Liquid tags to anyone checking that no Rust file carries any.
        let (open, close) = ('{', '}');
        writeln!(
            out,
            "    EmbeddedMigration {open} folder: {name:?}, up: include_str!({:?}), down: {}, metadata: {}, test_data: {}, test_expect: {} {close},",
            folder.join("up.sql").display().to_string(),
            file("down.sql"),
            file("metadata.toml"),
            file("test_data.sql"),
            file("test_expect.sql"),
        )
        .unwrap();
    }
    out.push(']');
    let target = Path::new(&std::env::var("OUT_DIR").unwrap()).join("embedded_migrations.rs");
    std::fs::write(target, out).unwrap();
}
