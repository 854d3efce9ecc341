//! `migrate generate model`: a new table in one command, written as docs/first-model.md
//! teaches it. [`spec`] parses the command line, [`project`] checks it against the project
//! and plans every write, [`sql`], [`rust`] and [`test_file`] write the text; this module
//! writes the plan (all or nothing) and then applies it.

pub mod bulk;
pub mod enums;
pub mod names;
pub mod project;
pub mod rust;
pub mod spec;
pub mod sql;
pub mod test_file;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use app::outln;

/// Everything one `generate model` writes: new files, and whole new contents of files it
/// edits. Built in full before anything is written.
#[derive(Debug, Default)]
pub struct Plan {
    /// New files: path (relative to the project), content.
    pub files: Vec<(PathBuf, String)>,
    /// Edited files: path, new content, what changed (for `--dry-run`).
    pub edits: Vec<(PathBuf, String, String)>,
    /// The new migration folder.
    pub folder: PathBuf,
}

impl Plan {
    /// Prints each file and edit, writing nothing (`--dry-run`).
    pub fn print(&self) {
        for (path, content) in &self.files {
            outln!("==> would write {}\n{content}", path.display());
        }
        for (path, _, what) in &self.edits {
            outln!("==> would edit {}: {what}", path.display());
        }
    }

    /// Writes the plan under `project`. On any failure, what was written is removed and
    /// edited files get their old content back.
    pub fn write(&self, project: &Path) -> Result<()> {
        let mut undo = Undo::default();
        let result = self.write_all(project, &mut undo);
        if result.is_err() {
            undo.run();
        }
        result
    }

    fn write_all(&self, project: &Path, undo: &mut Undo) -> Result<()> {
        let folder = project.join(&self.folder);
        std::fs::create_dir(&folder).with_context(|| format!("create {}", folder.display()))?;
        undo.dirs.push(folder);
        for (path, content) in &self.files {
            let path = project.join(path);
            // create_new: a file that appeared since the checks is never overwritten.
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .with_context(|| format!("create {}", path.display()))?;
            undo.files.push(path.clone());
            std::io::Write::write_all(&mut file, content.as_bytes())
                .with_context(|| format!("write {}", path.display()))?;
        }
        for (path, content, _) in &self.edits {
            let path = project.join(path);
            let old = std::fs::read_to_string(&path).unwrap_or_default();
            undo.edits.push((path.clone(), old));
            std::fs::write(&path, content).with_context(|| format!("write {}", path.display()))?;
        }
        for (path, _) in &self.files {
            outln!("wrote {}", path.display());
        }
        for (path, _, what) in &self.edits {
            outln!("edited {}: {what}", path.display());
        }
        Ok(())
    }
}

/// What to take back when writing fails halfway.
#[derive(Default)]
struct Undo {
    dirs: Vec<PathBuf>,
    files: Vec<PathBuf>,
    edits: Vec<(PathBuf, String)>,
}

impl Undo {
    fn run(self) {
        for (path, old) in self.edits {
            let _ = std::fs::write(path, old);
        }
        for path in self.files {
            let _ = std::fs::remove_file(path);
        }
        for dir in self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Formats Rust source as `cargo fmt` would (edition 2024), so `cargo fmt --check` passes;
/// the text as it is when rustfmt is missing or refuses it.
pub fn rustfmt(source: String) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new("rustfmt")
        .args(["--edition", "2024", "--emit", "stdout", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        return source;
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(source.as_bytes());
    }
    match child.wait_with_output() {
        Ok(out) if out.status.success() && !out.stdout.is_empty() => {
            String::from_utf8(out.stdout).unwrap_or(source)
        }
        _ => source,
    }
}

#[cfg(test)]
mod tests {
    use super::Plan;

    #[test]
    fn a_write_failing_halfway_takes_back_what_it_wrote() {
        let dir = std::env::temp_dir().join(format!("scaffold-undo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join("src/mod.rs"), "old\n").unwrap();
        let plan = Plan {
            folder: "migrations_x".into(),
            files: vec![
                ("migrations_x/up.sql".into(), "CREATE TABLE x ();\n".into()),
                ("src/x.rs".into(), "// x\n".into()),
                // No such folder: this write fails.
                ("missing/y.rs".into(), "// y\n".into()),
            ],
            edits: vec![("src/mod.rs".into(), "new\n".into(), "a line".into())],
        };
        assert!(plan.write(&dir).is_err());
        assert!(!dir.join("migrations_x").exists());
        assert!(!dir.join("src/x.rs").exists());
        assert_eq!(
            std::fs::read_to_string(dir.join("src/mod.rs")).unwrap(),
            "old\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
