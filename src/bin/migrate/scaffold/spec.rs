//! The command line of `generate model`, parsed and checked into a [`Model`]: names,
//! types, modifiers. Pure: what the project already holds is checked in `project.rs`.
//!
//! A field is `NAME:TYPE[:ARG...][:MODIFIER...]`, `?` after the type (or any of its parts)
//! making it nullable: `due:date?`, `code:string:20:unique`, `owner:references:users:cascade`,
//! `status:enum(open,closed)` (or `status:enum:open,closed`, which needs no shell quotes).

use anyhow::{Result, bail};

use super::names::{camel, identifier, plural};

/// What a column holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `text`: TEXT.
    Text,
    /// `string:N`: TEXT with a CHECK on its length (`<table>_<col>_check`).
    String(u32),
    /// `int`: INTEGER.
    Int,
    /// `bigint`: BIGINT.
    BigInt,
    /// `bool`: BOOLEAN.
    Bool,
    /// `date`: DATE.
    Date,
    /// `timestamptz`: TIMESTAMPTZ.
    Timestamptz,
    /// `uuid`: UUID.
    Uuid,
    /// `jsonb`: JSONB.
    Jsonb,
    /// `text[]`: TEXT[] with a CHECK against NULL elements (`<table>_<col>_no_nulls`).
    TextArray,
    /// `enum(a,b)`: a PostgreSQL enum type `<model>_<col>`, as `task_status` is.
    Enum(Vec<String>),
    /// `references:TABLE[:ON_DELETE]`: a BIGINT `<name>_id` referencing `TABLE (id)`.
    References { table: String, on_delete: OnDelete },
}

/// What deleting the referenced row does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDelete {
    /// The default: the delete is refused while rows refer to it. Never loses data.
    Restrict,
    /// `cascade`: these rows are deleted with it.
    Cascade,
    /// `set-null`: the reference is cleared (the field must be nullable).
    SetNull,
}

impl OnDelete {
    /// The SQL clause.
    pub fn sql(self) -> &'static str {
        match self {
            OnDelete::Restrict => "RESTRICT",
            OnDelete::Cascade => "CASCADE",
            OnDelete::SetNull => "SET NULL",
        }
    }
}

/// One field of the model: one column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The column: the field's name, with `_id` added for a reference.
    pub column: String,
    /// What it holds.
    pub kind: Kind,
    /// `?`: NULL allowed.
    pub nullable: bool,
    /// `unique`: a UNIQUE constraint `<table>_<col>_key`.
    pub unique: bool,
    /// `index`: an index `<table>_<col>_idx` (references get one anyway).
    pub index: bool,
}

/// The most columns Diesel's `table!` takes without its `32-column-tables` feature.
const MAX_COLUMNS: usize = 16;

/// The whole request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    /// The module and singular name, snake_case: `project`, `line_item`.
    pub name: String,
    /// The table: the plural of `name`, or `--table`.
    pub table: String,
    /// The fields, in the order given.
    pub fields: Vec<Field>,
    /// `created_at` / `updated_at`, the latter kept by the shared trigger.
    pub timestamps: bool,
    /// `deleted_at`: delete sets it, find and list skip such rows.
    pub soft_delete: bool,
    /// `--bulk`: a `BulkRow` impl in `src/bulk/rows.rs`, and a test of it.
    pub bulk: bool,
}

impl Model {
    /// Parses and checks everything that needs no look at the project.
    pub fn parse(
        name: &str,
        fields: &[String],
        table: Option<&str>,
        timestamps: bool,
        soft_delete: bool,
    ) -> Result<Model> {
        identifier("model name", name)?;
        let table = match table {
            Some(t) => {
                identifier("table name", t)?;
                t.to_owned()
            }
            None => plural(name)?,
        };
        if fields.is_empty() {
            bail!("a model needs at least one field, e.g. `name:text`");
        }
        let mut parsed: Vec<Field> = Vec::new();
        for spec in fields {
            let field = parse_field(spec, &table)?;
            if parsed.iter().any(|f| f.column == field.column) {
                bail!("field `{}` is given twice", field.column);
            }
            parsed.push(field);
        }
        let model = Model {
            name: name.to_owned(),
            table,
            fields: parsed,
            timestamps,
            soft_delete,
            bulk: false,
        };
        let columns = 1 + model.fields.len() + 2 * timestamps as usize + soft_delete as usize;
        if columns > MAX_COLUMNS {
            bail!(
                "the table would have {columns} columns (id and the options' included); \
                 Diesel's table! takes at most {MAX_COLUMNS} without its `32-column-tables` \
                 feature: split the table, or enable that feature in Cargo.toml (slower builds)"
            );
        }
        for ident in model.sql_names() {
            // PostgreSQL cuts longer names silently; errors would then name another.
            if ident.len() > 63 {
                bail!("`{ident}` is longer than PostgreSQL's 63 bytes: use shorter names");
            }
        }
        Ok(model)
    }

    /// The Rust type of a row: `Project`, `LineItem`.
    pub fn struct_name(&self) -> String {
        camel(&self.name)
    }

    /// The PostgreSQL enum type of an enum field: `<model>_<col>`, like `task_status`.
    pub fn enum_type(&self, field: &Field) -> String {
        format!("{}_{}", self.name, field.column)
    }

    /// The Rust type of an enum field: `ProjectStatus`.
    pub fn enum_name(&self, field: &Field) -> String {
        camel(&self.enum_type(field))
    }

    /// The enum fields, with their labels.
    pub fn enums(&self) -> impl Iterator<Item = (&Field, &[String])> {
        self.fields.iter().filter_map(|f| match &f.kind {
            Kind::Enum(labels) => Some((f, labels.as_slice())),
            _ => None,
        })
    }

    /// Every Rust name the model file exports, for clash checks.
    pub fn exported(&self) -> Vec<String> {
        let name = self.struct_name();
        let mut out = vec![name.clone(), format!("New{name}"), format!("{name}Changes")];
        out.extend(self.enums().map(|(f, _)| self.enum_name(f)));
        out
    }

    /// Every SQL name the migration creates: the table, types, constraints, indexes.
    pub fn sql_names(&self) -> Vec<String> {
        let t = &self.table;
        let mut out = vec![t.clone()];
        for f in &self.fields {
            let c = &f.column;
            out.push(format!("{t}_{c}_idx"));
            out.push(format!("{t}_{c}_key"));
            out.push(format!("{t}_{c}_check"));
            out.push(format!("{t}_{c}_no_nulls"));
            out.push(format!("{t}_{c}_fkey"));
            if matches!(f.kind, Kind::Enum(_)) {
                out.push(self.enum_type(f));
            }
        }
        out
    }
}

fn parse_field(spec: &str, table: &str) -> Result<Field> {
    let mut nullable = false;
    // `?` may end the type or any of its parts; once.
    let parts: Vec<String> = spec
        .split(':')
        .map(|p| match p.strip_suffix('?') {
            Some(rest) => {
                nullable = true;
                rest.to_owned()
            }
            None => p.to_owned(),
        })
        .collect();
    if spec.matches('?').count() > 1 || spec.split(':').next().is_some_and(|n| n.ends_with('?')) {
        bail!("`{spec}`: one `?`, after the type, makes a field nullable");
    }
    let (name, rest) = match parts.split_first() {
        Some((name, rest)) if !rest.is_empty() => (name.as_str(), rest),
        _ => bail!("`{spec}`: a field is NAME:TYPE, e.g. `title:text` or `due:date?`"),
    };
    identifier("field name", name)?;
    if ["id", "created_at", "updated_at", "deleted_at"].contains(&name) {
        bail!(
            "`{name}`: the generator writes `id` itself, and `created_at`, `updated_at` and \
             `deleted_at` come from --timestamps and --soft-delete"
        );
    }
    let ty = rest[0].as_str();
    let mut args = &rest[1..];
    let mut take_arg = |what: &str| -> Result<String> {
        match args.split_first() {
            Some((first, tail)) => {
                args = tail;
                Ok(first.clone())
            }
            None => bail!("`{spec}`: `{ty}` needs {what}"),
        }
    };
    let mut column = name.to_owned();
    let kind = match ty {
        "text" => Kind::Text,
        "string" => {
            let n = take_arg("a length, e.g. `string:120`")?;
            match n.parse::<u32>() {
                Ok(n @ 1..=10_485_760) => Kind::String(n),
                _ => bail!("`{spec}`: the length of `string:N` is a number from 1 to 10485760"),
            }
        }
        "int" => Kind::Int,
        "bigint" => Kind::BigInt,
        "bool" => Kind::Bool,
        "date" => Kind::Date,
        "timestamptz" => Kind::Timestamptz,
        "uuid" => Kind::Uuid,
        "jsonb" => Kind::Jsonb,
        "text[]" => Kind::TextArray,
        "enum" => Kind::Enum(labels(
            spec,
            &take_arg("its values, e.g. `enum:open,closed`")?,
        )?),
        _ if ty.starts_with("enum(") && ty.ends_with(')') => {
            Kind::Enum(labels(spec, &ty[5..ty.len() - 1])?)
        }
        "references" => {
            let target = take_arg("a table, e.g. `references:users`")?;
            identifier("referenced table", &target)?;
            column = format!("{name}_id");
            let on_delete = match args.first().map(String::as_str) {
                Some("cascade") => Some(OnDelete::Cascade),
                Some("restrict") => Some(OnDelete::Restrict),
                Some("set-null") => Some(OnDelete::SetNull),
                _ => None,
            };
            if on_delete.is_some() {
                args = &args[1..];
            }
            // RESTRICT by default: deleting a parent never deletes rows nobody asked about.
            let on_delete = on_delete.unwrap_or(OnDelete::Restrict);
            Kind::References {
                table: target,
                on_delete,
            }
        }
        other => bail!(
            "`{spec}`: unknown type `{other}`; the types are text, string:N, int, bigint, bool, \
             date, timestamptz, uuid, jsonb, text[], enum(a,b), references:TABLE"
        ),
    };
    let mut field = Field {
        column,
        kind,
        nullable,
        unique: false,
        index: false,
    };
    for modifier in args {
        match modifier.as_str() {
            "unique" => field.unique = true,
            "index" => field.index = true,
            other => bail!(
                "`{spec}`: unknown `{other}`; after the type come `unique`, `index`, and for a \
                 reference `cascade`, `restrict` or `set-null`"
            ),
        }
    }
    if let Kind::References { on_delete, .. } = &field.kind
        && *on_delete == OnDelete::SetNull
        && !field.nullable
    {
        bail!(
            "`{spec}`: `set-null` needs a nullable reference (`?`), e.g. `{name}:references:{}?:set-null`",
            table_of(&field)
        );
    }
    if field.unique && matches!(field.kind, Kind::Bool | Kind::Jsonb | Kind::TextArray) {
        bail!("`{spec}`: `unique` on a {ty} column is not offered");
    }
    let _ = table;
    Ok(field)
}

fn table_of(field: &Field) -> &str {
    match &field.kind {
        Kind::References { table, .. } => table,
        _ => "",
    }
}

/// The labels of `enum(a,b)`: snake_case words, each once, at least one.
fn labels(spec: &str, list: &str) -> Result<Vec<String>> {
    let labels: Vec<String> = list.split(',').map(|l| l.trim().to_owned()).collect();
    for (i, label) in labels.iter().enumerate() {
        let word = label.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !word {
            bail!(
                "`{spec}`: enum values are snake_case words (`open`, `in_progress`), not `{label}`"
            );
        }
        if labels[..i].contains(label) {
            bail!("`{spec}`: enum value `{label}` is given twice");
        }
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(fields: &[&str]) -> Result<Model> {
        let fields: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
        Model::parse("project", &fields, None, true, true)
    }

    fn err(fields: &[&str]) -> String {
        parse(fields).unwrap_err().to_string()
    }

    #[test]
    fn the_issue_example_parses() {
        let m = parse(&[
            "name:string:120",
            "owner:references:users",
            "due:date?",
            "status:enum(open,closed)",
        ])
        .unwrap();
        assert_eq!(m.table, "projects");
        let kinds: Vec<(&str, &Kind, bool)> = (m.fields.iter())
            .map(|f| (f.column.as_str(), &f.kind, f.nullable))
            .collect();
        let users = Kind::References {
            table: "users".into(),
            on_delete: OnDelete::Restrict,
        };
        let status = Kind::Enum(vec!["open".into(), "closed".into()]);
        assert_eq!(
            kinds,
            [
                ("name", &Kind::String(120), false),
                ("owner_id", &users, false),
                ("due", &Kind::Date, true),
                ("status", &status, false),
            ]
        );
        assert_eq!(m.enum_name(&m.fields[3]), "ProjectStatus");
        assert_eq!(
            m.exported(),
            ["Project", "NewProject", "ProjectChanges", "ProjectStatus"]
        );
    }

    #[test]
    fn modifiers_nullability_and_on_delete() {
        let m = parse(&[
            "code:string:20:unique",
            "team:references:teams?:set-null:index",
            "parent:references:projects:cascade",
            "tags:text[]?",
            "kind:enum:a,b_c",
            "n:int:index",
        ])
        .unwrap();
        let f = &m.fields;
        assert!(f[0].unique && !f[0].nullable && f[0].kind == Kind::String(20));
        assert!(f[1].nullable && f[1].index && f[1].column == "team_id");
        assert!(matches!(
            &f[1].kind,
            Kind::References {
                on_delete: OnDelete::SetNull,
                ..
            }
        ));
        assert!(matches!(
            &f[2].kind,
            Kind::References {
                on_delete: OnDelete::Cascade,
                ..
            }
        ));
        assert!(f[3].nullable && f[3].kind == Kind::TextArray);
        assert_eq!(f[4].kind, Kind::Enum(vec!["a".into(), "b_c".into()]));
        assert!(f[5].index);
    }

    #[test]
    fn bad_fields_are_refused_with_the_reason() {
        for (fields, says) in [
            (&["name:string:0"][..], "1 to 10485760"),
            (&["name:string:abc"], "1 to 10485760"),
            (&["name:string"], "needs a length"),
            (&["name:varchar"], "unknown type `varchar`"),
            (&["type:text"], "Rust keyword"),
            (&["order:int"], "reserved word"),
            (&["id:bigint"], "writes `id` itself"),
            (&["created_at:timestamptz"], "--timestamps"),
            (&["a:text", "a:int"], "given twice"),
            (
                &["owner:references:users", "owner_id:bigint"],
                "given twice",
            ),
            (&["Name:text"], "snake_case"),
            (&["name"], "NAME:TYPE"),
            (&["name?:text"], "after the type"),
            (&["owner:references:users:set-null"], "nullable reference"),
            (&["owner:references"], "needs a table"),
            (&["s:enum(a,a)"], "twice"),
            (&["s:enum(A,b)"], "snake_case words"),
            (&["s:enum()"], "snake_case words"),
            (&["a:text:primary"], "unknown `primary`"),
            (&["a:bool:unique"], "not offered"),
        ] {
            let e = err(fields);
            assert!(e.contains(says), "{fields:?}: {e}");
        }
        assert!(parse(&[]).is_err());
        // Diesel's table! stops at 16 columns: id and 15 fields fit, 16 do not.
        let many: Vec<String> = (0..16).map(|i| format!("f{i}:int")).collect();
        assert!(Model::parse("wide", &many[..15], None, false, false).is_ok());
        let e = Model::parse("wide", &many, None, false, false).unwrap_err();
        assert!(e.to_string().contains("17 columns"), "{e}");
        let e = Model::parse("wide", &many[..14], None, true, false).unwrap_err();
        assert!(e.to_string().contains("32-column-tables"), "{e}");
    }

    #[test]
    fn model_names_are_checked_and_a_table_may_be_named() {
        let fields = vec!["a:text".to_owned()];
        assert!(Model::parse("fn", &fields, None, false, false).is_err());
        assert!(Model::parse("Project", &fields, None, false, false).is_err());
        assert!(Model::parse("user", &fields, None, false, false).is_err());
        let m = Model::parse("status", &fields, Some("statuses"), false, false).unwrap();
        assert_eq!(
            (m.table.as_str(), m.struct_name().as_str()),
            ("statuses", "Status")
        );
        let long = "a".repeat(60);
        let e = Model::parse(&long, &fields, None, false, false).unwrap_err();
        assert!(e.to_string().contains("63 bytes"), "{e}");
    }
}
