//! What the project already holds, checked before anything is written: tables (in
//! `src/schema.rs` and in the migrations), modules, exported names, referenced tables.
//! Then the [`Plan`]: every file and edit, with its final text.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::spec::{Kind, Model};
use super::{Plan, rust, rustfmt, sql, test_file};

/// The project's files the generator reads.
pub struct Project {
    /// The project folder (the current directory).
    pub root: PathBuf,
    /// The migrations folder (`--dir`, else `migrations/`).
    pub migrations: PathBuf,
    schema: String,
    models: String,
    tests_main: Option<String>,
    created: String,
}

impl Project {
    /// Reads what the checks need; a project without `src/schema.rs` or
    /// `src/models/mod.rs` is not one this generator knows.
    pub fn read(root: &Path, migrations: &Path) -> Result<Project> {
        let read = |rel: &str| {
            std::fs::read_to_string(root.join(rel))
                .with_context(|| format!("read {rel} (run this in the project folder)"))
        };
        let mut created = String::new();
        if let Ok(entries) = std::fs::read_dir(migrations) {
            for entry in entries.flatten() {
                let up = entry.path().join("up.sql");
                created += &std::fs::read_to_string(up)
                    .unwrap_or_default()
                    .to_lowercase();
                created += "\n";
            }
        }
        Ok(Project {
            root: root.to_owned(),
            migrations: migrations.to_owned(),
            schema: read("src/schema.rs")?,
            models: read("src/models/mod.rs")?,
            tests_main: read("tests/app/main.rs").ok(),
            created,
        })
    }

    /// The tables of `src/schema.rs` with their primary key: `tags (id) {` lines.
    fn tables(&self) -> Vec<(String, String)> {
        (self.schema.lines())
            .filter_map(|l| {
                let l = l.trim().strip_suffix(") {")?;
                let (name, key) = l.split_once(" (")?;
                let word = |s: &str| {
                    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                };
                (word(name)).then(|| (name.to_owned(), key.to_owned()))
            })
            .collect()
    }

    /// True when a migration creates `what` (`table` or `type`) named `name`.
    fn migration_creates(&self, what: &str, name: &str) -> bool {
        let starts = [
            format!("create {what} {name}"),
            format!("create {what} if not exists {name}"),
        ];
        starts.iter().any(|start| {
            [" ", "(", "\n"]
                .iter()
                .any(|after| self.created.contains(&format!("{start}{after}")))
        })
    }

    /// Refuses whatever would clash or dangle; writes nothing.
    pub fn check(&self, model: &Model) -> Result<()> {
        let t = &model.table;
        let tables = self.tables();
        if tables.iter().any(|(name, _)| name == t) {
            bail!("table `{t}` exists already (src/schema.rs): pick another name or --table");
        }
        if self.migration_creates("table", t) {
            bail!("a migration already creates a table `{t}`: pick another name or --table");
        }
        let file = format!("src/models/{}.rs", model.name);
        if self.root.join(&file).exists()
            || self
                .root
                .join(format!("src/models/{}", model.name))
                .exists()
        {
            bail!("{file} exists already");
        }
        let module = format!("pub mod {};", model.name);
        if self.models.lines().any(|l| l.trim() == module) {
            bail!("src/models/mod.rs already has `{module}`");
        }
        for name in model.exported() {
            let taken = (self.models.lines())
                .filter(|l| l.starts_with("pub use ") || l.starts_with("    "))
                .any(|l| {
                    l.split(|c: char| !c.is_alphanumeric() && c != '_')
                        .any(|w| w == name)
                });
            if taken {
                bail!("src/models/mod.rs already exports a `{name}`: pick another model name");
            }
        }
        let test = format!("tests/app/{t}.rs");
        if self.root.join(&test).exists() {
            bail!("{test} exists already");
        }
        for (field, _) in model.enums() {
            let ty = model.enum_type(field);
            if self.schema.contains(&format!("name = \"{ty}\""))
                || self.migration_creates("type", &ty)
            {
                bail!(
                    "a type `{ty}` exists already: rename the field `{}`",
                    field.column
                );
            }
        }
        for f in &model.fields {
            if let Kind::References { table, .. } = &f.kind {
                if table == t {
                    if !f.nullable {
                        bail!(
                            "`{}` refers to the new table itself: make it nullable (`?`), or no \
                             first row could be inserted",
                            f.column
                        );
                    }
                    continue;
                }
                match tables.iter().find(|(name, _)| name == table) {
                    None => bail!(
                        "`{}` refers to table `{table}`, which src/schema.rs does not have",
                        f.column
                    ),
                    Some((_, key)) if key != "id" => bail!(
                        "`{}` refers to `{table}`, whose primary key is ({key}), not a single `id`",
                        f.column
                    ),
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }

    /// Every write, with its final text.
    pub fn plan(&self, model: &Model) -> Result<Plan> {
        let t = &model.table;
        let folder = self
            .migrations
            .join(format!("{}_create_{t}", next_version(&self.migrations)?));
        let folder = folder
            .strip_prefix(&self.root)
            .unwrap_or(&folder)
            .to_owned();
        let mut plan = Plan {
            folder: folder.clone(),
            ..Plan::default()
        };
        plan.files.push((folder.join("up.sql"), sql::up(model)));
        plan.files.push((folder.join("down.sql"), sql::down(model)));
        let file = PathBuf::from(format!("src/models/{}.rs", model.name));
        plan.files
            .push((file, rustfmt(rust::model_file(model, &self.models))));

        let mut exported = model.exported();
        exported.sort();
        let models = with_line(
            &self.models,
            &format!("pub mod {};", model.name),
            "pub mod ",
        );
        let uses = String::from("pub use ") + &model.name + "::{" + &exported.join(", ") + "};";
        let models = rustfmt(with_line(&models, &uses, "pub use "));
        plan.edits.push((
            "src/models/mod.rs".into(),
            models,
            format!("`pub mod {};` and `{uses}`", model.name),
        ));

        if let Some(main) = &self.tests_main {
            plan.files.push((
                format!("tests/app/{t}.rs").into(),
                rustfmt(test_file::test_file(model)),
            ));
            let line = format!("mod {t};");
            plan.edits.push((
                "tests/app/main.rs".into(),
                with_line(main, &line, "mod "),
                format!("`{line}`"),
            ));
        }

        if model.bulk {
            let path = "src/bulk/rows.rs";
            let rows = std::fs::read_to_string(self.root.join(path))
                .with_context(|| format!("read {path} (--bulk adds the BulkRow impl there)"))?;
            plan.edits.push((
                path.into(),
                rustfmt(super::bulk::rows_file(model, &rows)),
                format!("`impl BulkRow for New{}`", model.struct_name()),
            ));
        }

        let arrays: Vec<_> = (model.fields.iter())
            .filter(|f| f.kind == Kind::TextArray)
            .collect();
        if !arrays.is_empty() {
            let path = self.root.join("src/schema.patch");
            let mut patch = std::fs::read_to_string(&path).unwrap_or_default();
            if patch.is_empty() {
                patch += "--- src/schema.rs\n+++ src/schema.rs\n";
            }
            // diffy wants hunks in order: each new one starts past the last, and print-schema
            // still finds it by its context wherever the table lands.
            let mut line = last_hunk_end(&patch) + 1;
            for f in &arrays {
                patch += &array_hunk(t, &f.column, f.nullable, line);
                line += 6;
            }
            plan.edits.push((
                "src/schema.patch".into(),
                patch,
                "a hunk per text[] column, so print-schema maps it to Vec<String>".into(),
            ));
        }
        Ok(plan)
    }
}

/// The last line any hunk of `patch` covers, old or new side.
fn last_hunk_end(patch: &str) -> usize {
    let end = |range: &str| {
        let (start, len) = range.split_once(',').unwrap_or((range, "1"));
        start.parse::<usize>().unwrap_or(0) + len.parse::<usize>().unwrap_or(0)
    };
    (patch.lines())
        .filter_map(|l| l.strip_prefix("@@ -"))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let old = words.next()?;
            let new = words.next()?.strip_prefix('+')?;
            Some(end(old).max(end(new)))
        })
        .max()
        .unwrap_or(0)
}

/// A hunk of `src/schema.patch` turning a `TEXT[]` column's `Array<Nullable<Text>>` into
/// `Array<Text>` (its CHECK forbids NULL elements). diffy, which print-schema applies the
/// patch with, finds the hunk by its context wherever the table lands, so line 1 will do.
fn array_hunk(table: &str, column: &str, nullable: bool, line: usize) -> String {
    let (open, close) = if nullable {
        ("Nullable<", ">")
    } else {
        ("", "")
    };
    let from = format!("{open}Array<Nullable<Text>>{close}");
    let to = format!("{open}Array<Text>{close}");
    format!(
        "@@ -{line},6 +{line},6 @@\n         /// The `{column}` column of the `{table}` table.\n         ///\n\
         -        /// Its SQL type is `{from}`.\n+        /// Its SQL type is `{to}`.\n\
         \x20        ///\n         /// (Automatically generated by Diesel.)\n\
         -        {column} -> {from},\n+        {column} -> {to},\n"
    )
}

/// The version for a new migration: now, or one second past the newest folder when that is
/// not older (as `migrate create` picks it).
fn next_version(dir: &Path) -> Result<String> {
    let at = crate::authoring::first_free_version(dir);
    Ok(at.format(crate::authoring::VERSION_FORMAT).to_string())
}

/// `source` with `line` put in alphabetical order into the last run of lines starting with
/// `kind`, where `cargo fmt` keeps it (a line of a multi-line item never starts with
/// `kind`, so the line lands between items).
pub fn with_line(source: &str, line: &str, kind: &str) -> String {
    let mut lines: Vec<&str> = source.lines().collect();
    let Some(last) = lines.iter().rposition(|l| l.starts_with(kind)) else {
        return format!("{}\n{line}\n", source.trim_end());
    };
    let start = lines[..=last]
        .iter()
        .rposition(|l| l.trim().is_empty() || l.starts_with("//") || l.starts_with('#'))
        .map_or(0, |i| i + 1);
    let at = (start..=last)
        .find(|&i| lines[i].starts_with(kind) && lines[i] > line)
        .unwrap_or_else(|| {
            (last + 1..lines.len())
                .find(|&i| lines[i - 1].ends_with(';'))
                .unwrap_or(lines.len())
        });
    lines.insert(at, line);
    lines.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_land_in_sorted_position_among_their_kind() {
        let src = "//! doc\n\npub mod bug;\npub mod tag;\n\npub use bug::Bug;\npub use task::{\n    A, B,\n};\npub use user::User;\n";
        let out = with_line(src, "pub mod project;", "pub mod ");
        assert!(
            out.contains("pub mod bug;\npub mod project;\npub mod tag;\n"),
            "{out}"
        );
        let out = with_line(src, "pub use project::Project;", "pub use ");
        assert!(
            out.contains("pub use bug::Bug;\npub use project::Project;\npub use task::{"),
            "{out}"
        );
        let out = with_line(src, "pub use zoo::Zoo;", "pub use ");
        assert!(
            out.ends_with("pub use user::User;\npub use zoo::Zoo;\n"),
            "{out}"
        );
    }

    #[test]
    fn a_text_array_hunk_applies_wherever_the_table_lands() {
        let hunk = array_hunk("projects", "tags", false, 300);
        assert!(hunk.starts_with("@@ -300,6 +300,6 @@\n"));
        assert_eq!(last_hunk_end("@@ -251,16 +251,16 @@\n x\n"), 267);
        assert!(
            hunk.contains(
                "-        tags -> Array<Nullable<Text>>,\n+        tags -> Array<Text>,\n"
            )
        );
        assert_eq!(hunk.lines().filter(|l| !l.starts_with('@')).count(), 8);
    }
}
