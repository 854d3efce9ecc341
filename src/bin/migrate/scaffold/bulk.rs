//! `--bulk`: the model's `BulkRow` impl, in `src/bulk/rows.rs` beside the others, so
//! `bulk::insert`, `upsert` and `copy_insert` take its `NewX` rows. Laid out as those
//! impls are: the struct destructured without `..`, so a new field does not compile until
//! its column is written.

use anyhow::{Result, bail};

use super::rust::{borrows, braced, fill};
use super::spec::{Kind, Model};

/// Refuses what the bulk paths cannot carry, before anything is written.
pub fn check(model: &Model) -> Result<()> {
    for f in &model.fields {
        if f.kind == Kind::TextArray && f.nullable {
            bail!(
                "--bulk: `{}` is a nullable text[]; bulk's text_arrays takes NOT NULL arrays \
                 (its None means the column's default), so drop the `?` or leave out --bulk",
                f.column
            );
        }
    }
    Ok(())
}

/// `rows` (src/bulk/rows.rs) with the model's `use` lines, a `Label` impl per enum and its
/// `BulkRow` impl added.
pub fn rows_file(model: &Model, rows: &str) -> String {
    let s = model.struct_name();
    let t = &model.table;
    let mut names: Vec<String> = model.enums().map(|(f, _)| model.enum_name(f)).collect();
    names.push(format!("New{s}"));
    names.sort();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let models = format!("use crate::models::{};", braced(&names));
    let mut out = super::project::with_line(rows, &models, "use crate::models");
    out = super::project::with_line(
        &out,
        &format!("use crate::schema::{t};"),
        "use crate::schema",
    );
    out = out.trim_end().to_owned() + "\n";

    for (f, _) in model.enums() {
        out += &fill(
            "\nimpl Label for __Enum__ {\n    fn label(&self) -> &'static str {\n        \
             self.as_str()\n    }\n}\n",
            &[("__Enum__", &model.enum_name(f))],
        );
    }

    let lifetime = if borrows(model) { "<'_>" } else { "" };
    let mut vecs = String::new();
    let mut pushes = String::new();
    let mut columns = String::new();
    let mut fields = Vec::new();
    for f in &model.fields {
        let c = &f.column;
        fields.push(c.as_str());
        vecs += &format!("        let mut {c}_column = Vec::with_capacity(rows.len());\n");
        let value = match (&f.kind, f.nullable) {
            (Kind::Enum(_), false) => format!("ByLabel(*{c})"),
            (Kind::Enum(_), true) => format!("{c}.map(ByLabel)"),
            (Kind::TextArray, _) => format!("Some({c}.to_vec())"),
            _ => format!("*{c}"),
        };
        pushes += &format!("            {c}_column.push({value});\n");
        let make = match f.kind {
            Kind::TextArray => "text_arrays",
            _ => "new",
        };
        columns += &format!("            Column::{make}({t}::{c}, {c}_column),\n");
    }
    out += &fill(
        "\nimpl BulkRow for New__Struct____lt__ {\n    type Table = __table__::table;\n\n    \
         fn columns<'r>(rows: &'r [Self]) -> Vec<Column<'r, __table__::table>> {\n\
         __vecs__        for row in rows {\n            let New__Struct__ { __fields__ } = row;\n\
         __pushes__        }\n        vec![\n__columns__        ]\n    }\n}\n",
        &[
            ("__Struct__", &s),
            ("__lt__", lifetime),
            ("__table__", t),
            ("__vecs__", &vecs),
            ("__fields__", &fields.join(", ")),
            ("__pushes__", &pushes),
            ("__columns__", &columns),
        ],
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROWS: &str = "//! Layouts.\n\nuse super::{BulkRow, ByLabel, Column, Label};\n\
                        use crate::models::{NewTask, UserRow};\nuse crate::schema::{tasks, users};\n\n\
                        impl BulkRow for UserRow {}\n";

    fn model(fields: &[&str]) -> Model {
        let fields: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
        Model::parse("project", &fields, None, false, false).unwrap()
    }

    #[test]
    fn every_field_becomes_a_column_and_enums_travel_by_label() {
        let m = model(&[
            "name:string:50",
            "owner:references:users",
            "state:enum(open,closed)",
            "note:text?",
            "tags:text[]",
        ]);
        let rows = rows_file(&m, ROWS);
        for line in [
            "use crate::models::{NewProject, ProjectState};",
            "use crate::schema::projects;",
            "impl Label for ProjectState {",
            "impl BulkRow for NewProject<'_> {",
            "let NewProject { name, owner_id, state, note, tags } = row;",
            "state_column.push(ByLabel(*state));",
            "note_column.push(*note);",
            "tags_column.push(Some(tags.to_vec()));",
            "Column::new(projects::owner_id, owner_id_column),",
            "Column::text_arrays(projects::tags, tags_column),",
        ] {
            assert!(rows.contains(line), "{line}\n{rows}");
        }
        // The existing impls stay.
        assert!(rows.contains("impl BulkRow for UserRow {}"), "{rows}");
    }

    #[test]
    fn a_nullable_text_array_is_refused() {
        let err = check(&model(&["tags:text[]?"])).unwrap_err().to_string();
        assert!(err.contains("nullable text[]"), "{err}");
        check(&model(&["tags:text[]", "x:int?"])).unwrap();
    }
}
