//! Names: what a model, table or field may be called (a plain identifier in both Rust and
//! SQL, no keyword of either), and the simple plurals that turn a model into its table.

use anyhow::{Result, bail};

/// A name usable unquoted in SQL and as a Rust identifier: snake_case ASCII, not a keyword
/// of either language.
pub fn identifier(what: &str, name: &str) -> Result<()> {
    let shape = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.ends_with('_')
        && !name.contains("__");
    if !shape {
        bail!(
            "{what} `{name}`: use snake_case ASCII (lowercase letters, digits, single \
             underscores, starting with a letter)"
        );
    }
    if RUST_KEYWORDS.contains(&name) {
        bail!("{what} `{name}` is a Rust keyword");
    }
    if SQL_RESERVED.contains(&name) {
        bail!("{what} `{name}` is a reserved word in PostgreSQL");
    }
    if DIESEL_NAMES.contains(&name) {
        bail!("{what} `{name}` clashes with a name Diesel's `table!` defines");
    }
    Ok(())
}

const RUST_KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "self", "static", "struct", "super", "trait", "true", "try", "type",
    "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield",
];

// PostgreSQL's reserved key words (appendix C), which cannot name a column unquoted.
const SQL_RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "asc",
    "asymmetric",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "column",
    "constraint",
    "create",
    "current_catalog",
    "current_date",
    "current_role",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "end",
    "except",
    "fetch",
    "foreign",
    "from",
    "grant",
    "group",
    "having",
    "initially",
    "intersect",
    "into",
    "lateral",
    "leading",
    "limit",
    "localtime",
    "localtimestamp",
    "not",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "placing",
    "primary",
    "references",
    "returning",
    "select",
    "session_user",
    "some",
    "symmetric",
    "system_user",
    "table",
    "then",
    "to",
    "trailing",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "when",
    "window",
    "with",
];

// What `diesel::table!` puts beside the columns of a table module.
const DIESEL_NAMES: &[&str] = &["star", "all_columns", "columns", "dsl"];

/// The table for a model name: its last word made plural. Simple English rules; a name
/// ending in `s` is refused (plural already? `status`?): pass `--table` for those and for
/// irregular plurals (`person` → `people`).
pub fn plural(name: &str) -> Result<String> {
    if name.ends_with('s') {
        bail!(
            "cannot tell the plural of `{name}` (it ends in s): name the table with --table, \
             e.g. --table {name}es"
        );
    }
    let consonant_y =
        name.ends_with('y') && !name[..name.len() - 1].ends_with(['a', 'e', 'i', 'o', 'u']);
    Ok(if consonant_y {
        format!("{}ies", &name[..name.len() - 1])
    } else if name.ends_with(['x', 'z']) || name.ends_with("ch") || name.ends_with("sh") {
        format!("{name}es")
    } else {
        format!("{name}s")
    })
}

/// The singular a table name most likely has, for finding its model: `users` → `user`.
pub fn singular(table: &str) -> String {
    if let Some(stem) = table.strip_suffix("ies") {
        return format!("{stem}y");
    }
    for end in ["xes", "zes", "ches", "shes", "sses"] {
        if table.ends_with(end) {
            return table[..table.len() - 2].to_owned();
        }
    }
    table.strip_suffix('s').unwrap_or(table).to_owned()
}

/// `line_item` → `LineItem`.
pub fn camel(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_pluralise_simply_or_are_refused() {
        assert_eq!(plural("project").unwrap(), "projects");
        assert_eq!(plural("category").unwrap(), "categories");
        assert_eq!(plural("day").unwrap(), "days");
        assert_eq!(plural("box").unwrap(), "boxes");
        assert_eq!(plural("batch").unwrap(), "batches");
        assert_eq!(plural("line_item").unwrap(), "line_items");
        assert!(
            plural("status")
                .unwrap_err()
                .to_string()
                .contains("--table")
        );
        for table in ["users", "categories", "boxes", "batches", "addresses"] {
            assert_eq!(
                plural(&singular(table)).ok().as_deref().unwrap_or(table),
                table
            );
        }
    }
}
