//! An enum column's Rust type in the model file: a Rust enum mapped to the PostgreSQL enum
//! both ways, as `TaskStatus` is in task.rs.

use super::names::camel;
use super::rust::fill;
use super::spec::{Field, Model};

/// A PostgreSQL enum as a Rust enum, mapped both ways as `TaskStatus` is in task.rs.
pub fn enum_block(model: &Model, field: &Field, labels: &[String]) -> String {
    let e = model.enum_name(field);
    let ty = model.enum_type(field);
    let mut variants = String::new();
    let mut as_str = String::new();
    let mut parse = String::new();
    let mut from_sql = String::new();
    for l in labels {
        let v = camel(l);
        variants += &format!("    /// `{l}`.\n    {v},\n");
        as_str += &format!("            {e}::{v} => \"{l}\",\n");
        parse += &format!("            \"{l}\" => Ok({e}::{v}),\n");
        from_sql += &format!("            b\"{l}\" => Ok({e}::{v}),\n");
    }
    let template = r#"
/// The `__type__` enum of PostgreSQL, as a Rust enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow, Serialize)]
#[diesel(sql_type = sql_types::__Enum__)]
#[serde(rename_all = "snake_case")]
pub enum __Enum__ {
__variants__}

impl __Enum__ {
    /// The enum label in PostgreSQL.
    pub fn as_str(self) -> &'static str {
        match self {
__as_str__        }
    }

    /// The value labelled `label`; any other label is `Error::Invalid` naming `__type__`,
    /// checked before any SQL.
    pub fn parse(label: &str) -> Result<__Enum__> {
        match label {
__parse__            // The label itself is not repeated: it may be anything a client sent.
            _ => Err(Error::invalid("__type__", "__words__ is one of __labels__")),
        }
    }
}

// PostgreSQL sends enum values as their label in text: map labels both ways.
impl ToSql<sql_types::__Enum__, Pg> for __Enum__ {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(self.as_str().as_bytes())?;
        Ok(IsNull::No)
    }
}

impl FromSql<sql_types::__Enum__, Pg> for __Enum__ {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        match bytes.as_bytes() {
__from_sql__            other => Err(format!("unknown __type__ {:?}", String::from_utf8_lossy(other)).into()),
        }
    }
}
"#;
    fill(
        template,
        &[
            ("__variants__", &variants),
            ("__as_str__", &as_str),
            ("__parse__", &parse),
            ("__from_sql__", &from_sql),
            ("__Enum__", &e),
            ("__type__", &ty),
            ("__words__", &format!("a {}", ty.replace('_', " "))),
            ("__labels__", &labels.join(", ")),
        ],
    )
}
