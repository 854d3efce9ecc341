//! The model file, `src/models/<name>.rs`, in the shape of `src/models/tag.rs`: the row
//! struct, `NewX<'a>`, `XChanges`, then `create`, `find`, `update`, `delete` and a keyset
//! `list` taking `mut conn: &AsyncPgConnection`, writes returning rows via `get_committed`.
//!
//! Text is built with `replace` on templates, not `format!`: the repository root is a
//! cargo-generate template, where doubled braces would be read as Liquid.

use super::names::camel;
use super::spec::{Field, Kind, Model, OnDelete};

/// Replaces each `(token, value)` in `template`.
pub fn fill(template: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (token, value) in pairs {
        out = out.replace(token, value);
    }
    out
}

/// The Rust type a row holds for the column, before `Option` for NULL.
pub fn owned_type(model: &Model, field: &Field) -> String {
    match &field.kind {
        Kind::Text | Kind::String(_) => "String".into(),
        Kind::Int => "i32".into(),
        Kind::BigInt | Kind::References { .. } => "i64".into(),
        Kind::Bool => "bool".into(),
        Kind::Date => "NaiveDate".into(),
        Kind::Timestamptz => "DateTime<Utc>".into(),
        Kind::Uuid => "uuid::Uuid".into(),
        Kind::Jsonb => "serde_json::Value".into(),
        Kind::TextArray => "Vec<String>".into(),
        Kind::Enum(_) => model.enum_name(field),
    }
}

/// The type `NewX` takes: borrowed where the row owns heap data.
pub fn borrowed_type(model: &Model, field: &Field) -> String {
    match &field.kind {
        Kind::Text | Kind::String(_) => "&'a str".into(),
        Kind::Jsonb => "&'a serde_json::Value".into(),
        Kind::TextArray => "&'a [String]".into(),
        _ => owned_type(model, field),
    }
}

fn optional(nullable: bool, ty: String) -> String {
    if nullable {
        format!("Option<{ty}>")
    } else {
        ty
    }
}

/// True when `NewX` borrows, so carries `'a`.
pub fn borrows(model: &Model) -> bool {
    (model.fields.iter()).any(|f| borrowed_type(model, f).starts_with('&'))
}

/// One line saying what the column holds, for its doc comment.
fn describe(model: &Model, field: &Field) -> String {
    let t = &model.table;
    let c = &field.column;
    let mut doc = match &field.kind {
        Kind::String(n) => format!("Up to {n} characters (`{t}_{c}_check`)"),
        Kind::TextArray => format!("A list of texts, none NULL (`{t}_{c}_no_nulls`)"),
        Kind::Enum(labels) => format!("One of {}", labels.join(", ")),
        Kind::References { table, on_delete } => {
            let what = match on_delete {
                OnDelete::Restrict => "deleting it is refused while this row refers to it",
                OnDelete::Cascade => "deleting it deletes this row",
                OnDelete::SetNull => "deleting it sets this to NULL",
            };
            format!("The `{table}` row it refers to (`{t}_{c}_fkey`); {what}")
        }
        _ => format!("The `{c}` column"),
    };
    if field.unique {
        doc += &format!("; unique (`{t}_{c}_key`)");
    }
    if field.nullable {
        doc += "; `None` is NULL";
    }
    doc + "."
}

/// The struct a `references:TABLE` field belongs to, when that model exists.
pub fn parent_struct(table: &str, models: &str) -> Option<String> {
    let name = camel(&super::names::singular(table));
    let exported = models
        .lines()
        .filter(|l| l.starts_with("pub use "))
        .any(|l| {
            l.split(|c: char| !c.is_alphanumeric() && c != '_')
                .any(|w| w == name)
        });
    exported.then_some(name)
}

/// The `belongs_to` parents: (struct, foreign key), one per parent struct (Diesel allows
/// one `BelongsTo` per pair of types).
pub fn parents(model: &Model, models: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for f in &model.fields {
        if let Kind::References { table, .. } = &f.kind
            && let Some(parent) = parent_struct(table, models)
            && table != &model.table
            && !out.iter().any(|(p, _)| *p == parent)
        {
            out.push((parent, f.column.clone()));
        }
    }
    out
}

/// The whole model file; `models` is `src/models/mod.rs`, to find parent structs.
pub fn model_file(model: &Model, models: &str) -> String {
    let s = model.struct_name();
    let t = &model.table;
    let has = |p: &dyn Fn(&Kind) -> bool| model.fields.iter().any(|f| p(&f.kind));
    let enums = model.enums().next().is_some();
    let parents = parents(model, models);

    let mut out = fill(
        "//! __Plural__: the `__table__` table, written by `migrate generate model __name__`.\n\
         //! Yours now: add queries below, keep its migration in step.\n\n",
        &[
            ("__Plural__", &camel(t)),
            ("__table__", t),
            ("__name__", &model.name),
        ],
    );
    if enums {
        out += "use std::io::Write;\n\n";
    }
    let mut chrono = Vec::new();
    if model.timestamps || model.soft_delete || has(&|k| *k == Kind::Timestamptz) {
        chrono.push("DateTime");
    }
    if has(&|k| *k == Kind::Date) {
        chrono.push("NaiveDate");
    }
    if !chrono.is_empty() {
        chrono.push("Utc");
        if chrono == ["NaiveDate", "Utc"] {
            chrono.pop();
        }
        out += &format!("use chrono::{};\n", braced(&chrono));
    }
    if enums {
        out += "use diesel::deserialize::{self, FromSql, FromSqlRow};\n\
                use diesel::expression::AsExpression;\n\
                use diesel::pg::{Pg, PgValue};\n";
    } else {
        out += "use diesel::pg::Pg;\n";
    }
    out += "use diesel::prelude::*;\n";
    if enums {
        out += "use diesel::serialize::{self, IsNull, Output, ToSql};\n";
    }
    out += "use diesel_async::{AsyncPgConnection, RunQueryDsl};\nuse serde::Serialize;\n\n";
    out += "use crate::db::CommittedDsl;\n";
    let mut models_used: Vec<String> = vec!["Page".into(), "PageRequest".into()];
    models_used.extend(parents.iter().map(|(p, _)| p.clone()));
    models_used.sort();
    models_used.dedup();
    let used: Vec<&str> = models_used.iter().map(String::as_str).collect();
    out += &format!("use crate::models::{};\n", braced(&used));
    if enums {
        let mut names = [t.as_str(), "sql_types"];
        names.sort();
        out += &format!("use crate::schema::{};\n", braced(&names));
    } else {
        out += &format!("use crate::schema::{t};\n");
    }
    out += "use crate::{Error, Result};\n";

    for (field, labels) in model.enums() {
        out += &super::enums::enum_block(model, field, labels);
    }

    // The row.
    let mut derives = vec![
        "Debug",
        "Clone",
        "PartialEq",
        "Queryable",
        "Selectable",
        "Identifiable",
    ];
    if !parents.is_empty() {
        derives.push("Associations");
    }
    derives.push("Serialize");
    out += &fill(
        "\n/// A row of `__table__`.\n#[derive(__derives__)]\n\
         #[diesel(table_name = __table__, check_for_backend(Pg))]\n",
        &[("__table__", t), ("__derives__", &derives.join(", "))],
    );
    for (parent, key) in &parents {
        out += &format!("#[diesel(belongs_to({parent}, foreign_key = {key}))]\n");
    }
    out += &format!("pub struct {s} ");
    out += "{\n    /// Primary key.\n    pub id: i64,\n";
    for f in &model.fields {
        let ty = optional(f.nullable, owned_type(model, f));
        out += &format!(
            "    /// {}\n    pub {}: {ty},\n",
            describe(model, f),
            f.column
        );
    }
    if model.timestamps {
        out += "    /// When it was created.\n    pub created_at: DateTime<Utc>,\n\
                /// Last change, kept by the `updated_at` trigger.\n    pub updated_at: DateTime<Utc>,\n";
    }
    if model.soft_delete {
        out += &format!(
            "    /// Set by [`{s}::delete`]; such rows are hidden from `find` and `list`.\n    \
             pub deleted_at: Option<DateTime<Utc>>,\n"
        );
    }
    out += "}\n";

    // The insert.
    let lifetime = if borrows(model) { "<'a>" } else { "" };
    let mut from_db = vec!["`id`"];
    if model.timestamps {
        from_db.extend(["`created_at`", "`updated_at`"]);
    }
    out += &fill(
        "\n/// A __name__ to insert; __from_db__ come from the database.\n\
         #[derive(Debug, Clone, Insertable)]\n#[diesel(table_name = __table__)]\n\
         pub struct New__Struct____lt__ ",
        &[
            ("__name__", &model.name.replace('_', " ")),
            ("__from_db__", &list_words(&from_db)),
            ("__table__", t),
            ("__Struct__", &s),
            ("__lt__", lifetime),
        ],
    );
    out += "{\n";
    for f in &model.fields {
        let ty = optional(f.nullable, borrowed_type(model, f));
        out += &format!(
            "    /// {}\n    pub {}: {ty},\n",
            describe(model, f),
            f.column
        );
    }
    out += "}\n";

    // The update.
    out += &fill(
        "\n/// A partial update. `None` leaves a column alone; for nullable columns `Some(None)`\n\
         /// sets NULL, `Some(Some(v))` sets `v`.\n\
         #[derive(Debug, Clone, Default, AsChangeset)]\n#[diesel(table_name = __table__)]\n\
         pub struct __Struct__Changes ",
        &[("__table__", t), ("__Struct__", &s)],
    );
    out += "{\n";
    for f in &model.fields {
        let ty = format!("Option<{}>", optional(f.nullable, owned_type(model, f)));
        let clears = if f.nullable {
            "; `Some(None)` clears it"
        } else {
            ""
        };
        out += &format!(
            "    /// New `{}`{clears}.\n    pub {}: {ty},\n",
            f.column, f.column
        );
    }
    out += "}\n\n";
    let empty: Vec<String> = (model.fields.iter())
        .map(|f| format!("self.{}.is_none()", f.column))
        .collect();
    out += &format!("impl {s}Changes ");
    out += "{\n    /// True when nothing is set: an UPDATE would have no SET clause.\n    \
            fn is_empty(&self) -> bool {\n        ";
    out += &empty.join("\n            && ");
    out += "\n    }\n}\n";

    out += &functions(model);
    out
}

/// `create`, `find`, `update`, `delete` and `list`.
fn functions(model: &Model) -> String {
    let s = model.struct_name();
    let t = &model.table;
    let lt = if borrows(model) { "<'_>" } else { "" };
    let mut out = String::new();
    let (rows, live_doc) = if model.soft_delete {
        out += &fill(
            "\n/// Rows not soft-deleted: the start of every default query.\n\
             type Live = diesel::dsl::Filter<__table__::table, diesel::dsl::IsNull<__table__::deleted_at>>;\n",
            &[("__table__", t)],
        );
        ("__Struct__::live()", ", unless soft-deleted")
    } else {
        ("__table__::table", "")
    };
    let mut body = String::from("\nimpl __Struct__ {\n");
    if model.soft_delete {
        body += "    /// The rows that are not soft-deleted.\n    \
                 pub fn live() -> Live {\n        \
                 __table__::table.filter(__table__::deleted_at.is_null())\n    }\n\n";
    }
    body += "    /// Inserts a __name__ and returns the stored row; a broken rule is `Error::Invalid`,\n    \
             /// `Error::Conflict` or `Error::ForeignKey` naming its constraint.\n    \
             pub async fn create(mut conn: &AsyncPgConnection, new: &New__Struct____lt__) -> Result<__Struct__> {\n        \
             Ok(diesel::insert_into(__table__::table)\n            .values(new)\n            \
             .returning(__Struct__::as_returning())\n            .get_committed(&mut conn)\n            .await?)\n    }\n\n";
    body += "    /// The __name__ with this id__live__.\n    \
             pub async fn find(mut conn: &AsyncPgConnection, id: i64) -> Result<__Struct__> {\n        \
             Ok(__rows__\n            .filter(__table__::id.eq(id))\n            \
             .select(__Struct__::as_select())\n            .first(&mut conn)\n            .await?)\n    }\n\n";
    body += "    /// Applies the set fields of `changes`, leaving the others untouched.\n    \
             pub async fn update(\n        mut conn: &AsyncPgConnection,\n        id: i64,\n        \
             changes: &__Struct__Changes,\n    ) -> Result<__Struct__> {\n        \
             if changes.is_empty() {\n            return __Struct__::find(conn, id).await;\n        }\n        \
             Ok(diesel::update(__rows__.filter(__table__::id.eq(id)))\n            .set(changes)\n            \
             .returning(__Struct__::as_returning())\n            .get_committed(&mut conn)\n            .await?)\n    }\n\n";
    if model.soft_delete {
        body += "    /// Soft-deletes: sets `deleted_at`, after which `find` and `list` skip the row.\n    \
                 pub async fn delete(mut conn: &AsyncPgConnection, id: i64) -> Result<()> {\n        \
                 let hidden = diesel::update(__rows__.filter(__table__::id.eq(id)))\n            \
                 .set(__table__::deleted_at.eq(diesel::dsl::now))\n            \
                 .execute(&mut conn)\n            .await?;\n        \
                 match hidden {\n            0 => Err(Error::NotFound),\n            _ => Ok(()),\n        }\n    }\n\n";
    } else {
        body += "    /// Deletes the __name__; a missing one is `Error::NotFound`.\n    \
                 pub async fn delete(mut conn: &AsyncPgConnection, id: i64) -> Result<()> {\n        \
                 match diesel::delete(__table__::table.find(id))\n            .execute(&mut conn)\n            .await?\n        \
                 {\n            0 => Err(Error::NotFound),\n            _ => Ok(()),\n        }\n    }\n\n";
    }
    body += "    /// A page of __plural__ by id__live_plural__ (keyset: `WHERE id > after`).\n    \
             pub async fn list(mut conn: &AsyncPgConnection, page: PageRequest) -> Result<Page<__Struct__>> {\n        \
             let rows = __rows__\n            .filter(__table__::id.gt(page.after_id()))\n            \
             .order(__table__::id)\n            .limit(page.limit.fetch())\n            \
             .select(__Struct__::as_select())\n            .load(&mut conn)\n            .await?;\n        \
             Ok(Page::from_rows(rows, page, |row| row.id))\n    }\n}\n";
    let live_plural = if model.soft_delete {
        ", soft-deleted ones left out"
    } else {
        ""
    };
    out += &fill(
        &body,
        &[
            ("__rows__", rows),
            ("__live__", live_doc),
            ("__live_plural__", live_plural),
            ("__Struct__", &s),
            ("__table__", t),
            ("__name__", &model.name.replace('_', " ")),
            ("__plural__", &t.replace('_', " ")),
            ("__lt__", lt),
        ],
    );
    out
}

/// `{a, b}`, or `a` alone.
pub fn braced(items: &[&str]) -> String {
    match items {
        [one] => (*one).to_owned(),
        _ => String::from("{") + &items.join(", ") + "}",
    }
}

/// `a`, `a and b`, `a, b and c`.
fn list_words(items: &[&str]) -> String {
    match items.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODELS: &str = "pub mod user;\n\npub use user::{Email, NewUser, User};\n";

    fn model(fields: &[&str], timestamps: bool, soft_delete: bool) -> Model {
        let fields: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
        Model::parse("project", &fields, None, timestamps, soft_delete).unwrap()
    }

    #[test]
    fn the_model_file_has_tags_sections_and_signatures() {
        let m = model(
            &[
                "name:string:120",
                "owner:references:users",
                "due:date?",
                "status:enum(open,closed)",
            ],
            true,
            true,
        );
        let file = model_file(&m, MODELS);
        for part in [
            "use chrono::{DateTime, NaiveDate, Utc};",
            "use crate::models::{Page, PageRequest, User};",
            "use crate::schema::{projects, sql_types};",
            "#[diesel(belongs_to(User, foreign_key = owner_id))]",
            "pub struct Project {",
            "pub struct NewProject<'a> {",
            "    pub name: &'a str,",
            "    pub due: Option<NaiveDate>,",
            "pub struct ProjectChanges {",
            "    pub due: Option<Option<NaiveDate>>,",
            "pub enum ProjectStatus {",
            "    Closed,",
            "pub async fn create(mut conn: &AsyncPgConnection, new: &NewProject<'_>) -> Result<Project>",
            "pub async fn find(mut conn: &AsyncPgConnection, id: i64) -> Result<Project>",
            "pub async fn list(mut conn: &AsyncPgConnection, page: PageRequest)",
            ".set(projects::deleted_at.eq(diesel::dsl::now))",
            "Ok(Project::live()\n",
            ".get_committed(&mut conn)",
        ] {
            assert!(file.contains(part), "{part} not in:\n{file}");
        }
        assert!(
            !file.contains(&"{".repeat(2)),
            "no doubled braces in generated text"
        );
    }

    #[test]
    fn a_model_without_borrowed_fields_or_parents_has_no_lifetime_or_associations() {
        let m = model(&["n:int", "team:references:teams?:set-null"], false, false);
        let file = model_file(&m, MODELS);
        assert!(file.contains("pub struct NewProject {"), "{file}");
        assert!(file.contains("new: &NewProject)"), "{file}");
        assert!(
            !file.contains("Associations") && !file.contains("chrono"),
            "{file}"
        );
        assert!(
            file.contains("diesel::delete(projects::table.find(id))"),
            "{file}"
        );
        assert!(
            file.contains("use crate::models::{Page, PageRequest};"),
            "{file}"
        );
    }
}
