//! The migration: `up.sql` creates the table with its rules as named constraints (so errors
//! name them), indexes every foreign key, and `down.sql` drops exactly that.
//!
//! `string:N` is TEXT with a CHECK, not VARCHAR(N): a length changed later is then a new
//! CHECK (added NOT VALID, validated without a long lock) instead of an ALTER COLUMN TYPE,
//! squawk's `prefer-text-field` asks for it, and a too-long value is `Error::Invalid` naming
//! `<table>_<col>_check` rather than an unnamed "value too long".

use super::spec::{Field, Kind, Model};

/// The column's SQL type.
pub fn sql_type(model: &Model, field: &Field) -> String {
    match &field.kind {
        Kind::Text | Kind::String(_) => "TEXT".into(),
        Kind::Int => "INTEGER".into(),
        Kind::BigInt | Kind::References { .. } => "BIGINT".into(),
        Kind::Bool => "BOOLEAN".into(),
        Kind::Date => "DATE".into(),
        Kind::Timestamptz => "TIMESTAMPTZ".into(),
        Kind::Uuid => "UUID".into(),
        Kind::Jsonb => "JSONB".into(),
        Kind::TextArray => "TEXT[]".into(),
        Kind::Enum(_) => model.enum_type(field),
    }
}

/// The CHECK constraints: (name, expression).
pub fn checks(model: &Model) -> Vec<(String, String)> {
    let t = &model.table;
    let mut out = Vec::new();
    for f in &model.fields {
        let c = &f.column;
        match f.kind {
            Kind::String(n) => {
                out.push((format!("{t}_{c}_check"), format!("char_length({c}) <= {n}")))
            }
            Kind::TextArray => out.push((
                format!("{t}_{c}_no_nulls"),
                format!("array_position({c}, NULL) IS NULL"),
            )),
            _ => {}
        }
    }
    out
}

/// The columns that get an index of their own: references (a foreign key needs one for
/// joins and for ON DELETE on the parent side) and `index`, unless `unique` made one.
pub fn indexed(model: &Model) -> Vec<&Field> {
    (model.fields.iter())
        .filter(|f| (f.index || matches!(f.kind, Kind::References { .. })) && !f.unique)
        .collect()
}

/// `up.sql`.
pub fn up(model: &Model) -> String {
    let t = &model.table;
    let mut sql = format!(
        "-- The `{t}` table of `src/models/{}.rs`, written by `migrate generate model`.\n",
        model.name
    );
    for (field, labels) in model.enums() {
        let quoted: Vec<String> = labels.iter().map(|l| format!("'{l}'")).collect();
        sql += &format!(
            "CREATE TYPE {} AS ENUM ({});\n",
            model.enum_type(field),
            quoted.join(", ")
        );
    }
    if model.enums().next().is_some() {
        sql += "\n";
    }
    sql += &format!("CREATE TABLE {t} (\n");
    let mut lines = vec!["id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY".to_owned()];
    for f in &model.fields {
        let mut line = String::new();
        if f.kind == Kind::Int {
            // squawk's prefer-bigint-over-int: `int` was asked for by name.
            line +=
                "-- squawk-ignore prefer-bigint-over-int -- int asked for: 32 bits suffice\n    ";
        }
        line += &format!("{} {}", f.column, sql_type(model, f));
        if !f.nullable {
            line += " NOT NULL";
        }
        if let Kind::References { table, on_delete } = &f.kind {
            line += &format!(" REFERENCES {table} (id) ON DELETE {}", on_delete.sql());
        }
        lines.push(line);
    }
    if model.timestamps {
        lines.push("created_at TIMESTAMPTZ NOT NULL DEFAULT now()".into());
        lines.push("updated_at TIMESTAMPTZ NOT NULL DEFAULT now()".into());
    }
    if model.soft_delete {
        lines.push("deleted_at TIMESTAMPTZ".into());
    }
    for f in model.fields.iter().filter(|f| f.unique) {
        let c = &f.column;
        lines.push(format!("CONSTRAINT {t}_{c}_key UNIQUE ({c})"));
    }
    for (name, check) in checks(model) {
        lines.push(format!("CONSTRAINT {name} CHECK ({check})"));
    }
    let body: Vec<String> = lines.iter().map(|l| format!("    {l}")).collect();
    sql += &body.join(",\n");
    sql += "\n);\n";
    let indexed = indexed(model);
    if !indexed.is_empty() {
        sql += "\n";
        if indexed
            .iter()
            .any(|f| matches!(f.kind, Kind::References { .. }))
        {
            sql += "-- Every foreign key gets an index: `migrate test` checks it.\n";
        }
        for f in indexed {
            let c = &f.column;
            sql += &format!("CREATE INDEX {t}_{c}_idx ON {t} ({c});\n");
        }
    }
    if model.timestamps {
        sql += &format!(
            "\n-- updated_at follows every UPDATE (the setup migration's trigger).\nSELECT diesel_manage_updated_at('{t}');\n"
        );
    }
    sql
}

/// `down.sql`: the table (its indexes, constraints and trigger go with it), then its types.
pub fn down(model: &Model) -> String {
    let mut sql = format!("DROP TABLE {};\n", model.table);
    for (field, _) in model.enums() {
        sql += &format!("DROP TYPE {};\n", model.enum_type(field));
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_example_becomes_this_migration() {
        let fields: Vec<String> = [
            "name:string:120",
            "owner:references:users",
            "due:date?",
            "status:enum(open,closed)",
            "code:string:8:unique",
        ]
        .map(String::from)
        .to_vec();
        let m = Model::parse("project", &fields, None, true, true).unwrap();
        let up = up(&m);
        for part in [
            "CREATE TYPE project_status AS ENUM ('open', 'closed');",
            "    owner_id BIGINT NOT NULL REFERENCES users (id) ON DELETE RESTRICT,\n",
            "    due DATE,\n",
            "    status project_status NOT NULL,\n",
            "    deleted_at TIMESTAMPTZ,\n",
            "    CONSTRAINT projects_code_key UNIQUE (code),\n",
            "    CONSTRAINT projects_name_check CHECK (char_length(name) <= 120),\n",
            "    CONSTRAINT projects_code_check CHECK (char_length(code) <= 8)\n);\n",
            "CREATE INDEX projects_owner_id_idx ON projects (owner_id);\n",
            "SELECT diesel_manage_updated_at('projects');\n",
        ] {
            assert!(up.contains(part), "{part} not in:\n{up}");
        }
        assert!(!up.contains("projects_code_idx"), "{up}");
        assert_eq!(
            down(&m),
            "DROP TABLE projects;\nDROP TYPE project_status;\n"
        );
    }
}
