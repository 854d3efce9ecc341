//! How each kind of column carries its values: bound as one array for `unnest`, and one by
//! one for COPY.

use std::marker::PhantomData;

use diesel::pg::Pg;
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::{Array, HasSqlType, Nullable, Text};
use tokio_postgres::types::{IsNull, Kind, Type};

use super::{CopySql, Query};

/// A column's values as the two write paths need them.
pub(super) trait Values: Send + Sync {
    /// Binds every value as one array parameter of the `unnest` source.
    fn bind<'q>(&'q self, query: Query<'q>) -> Query<'q>;
    /// The value of row `i`, for COPY.
    fn copy_value(&self, i: usize) -> &(dyn CopySql + Sync);
    /// How the `SELECT` reads the unnested value `v` back into the column.
    fn select(&self, v: &str) -> String {
        v.to_owned()
    }
    /// Where the column's default goes, for columns whose `None` takes it.
    fn default_slot(&mut self) -> Option<&mut ColumnDefault> {
        None
    }
    /// True when row `i` takes the column's default (COPY leaves the column out for it).
    fn is_default(&self, _i: usize) -> bool {
        false
    }
}

/// A column default's SQL, cast to the column's type, for the `unnest` paths. (COPY leaves
/// the column out instead, so the server evaluates the default per row.)
#[derive(Debug, Default, Clone)]
pub(super) struct ColumnDefault {
    pub sql: String,
}

/// Values every row has.
pub(super) struct Plain<ST, V>(pub Vec<V>, pub PhantomData<fn() -> ST>);

impl<ST, V> Values for Plain<ST, V>
where
    ST: Send + 'static,
    Pg: HasSqlType<ST>,
    V: ToSql<ST, Pg> + CopySql + Send + Sync,
{
    fn bind<'q>(&'q self, query: Query<'q>) -> Query<'q> {
        query.bind::<Array<ST>, _>(&self.0[..])
    }

    fn copy_value(&self, i: usize) -> &(dyn CopySql + Sync) {
        &self.0[i]
    }
}

/// Values where `None` takes the column's default.
pub(super) struct Defaulted<ST, V> {
    pub values: Vec<Option<V>>,
    pub default: ColumnDefault,
    pub st: PhantomData<fn() -> ST>,
}

impl<ST, V> Values for Defaulted<ST, V>
where
    ST: diesel::sql_types::SqlType<IsNull = diesel::sql_types::is_nullable::NotNull>
        + Send
        + 'static,
    Pg: HasSqlType<ST>,
    V: ToSql<ST, Pg> + CopySql + Send + Sync,
{
    fn bind<'q>(&'q self, query: Query<'q>) -> Query<'q> {
        query.bind::<Array<Nullable<ST>>, _>(&self.values[..])
    }

    /// `None` is never sent: COPY leaves the column out for that row.
    fn copy_value(&self, i: usize) -> &(dyn CopySql + Sync) {
        &self.values[i]
    }

    fn is_default(&self, i: usize) -> bool {
        self.values[i].is_none()
    }

    fn select(&self, v: &str) -> String {
        format!("COALESCE({v}, {})", self.default.sql)
    }

    fn default_slot(&mut self) -> Option<&mut ColumnDefault> {
        Some(&mut self.default)
    }
}

/// `text[]` values, `None` taking the default: literals for `unnest`, arrays for COPY.
pub(super) struct TextArrays {
    literals: Vec<Option<String>>,
    values: Vec<Option<Vec<String>>>,
    default: ColumnDefault,
}

impl TextArrays {
    pub fn new(values: Vec<Option<Vec<String>>>) -> Self {
        let literals = values
            .iter()
            .map(|v| v.as_deref().map(array_literal))
            .collect();
        let default = ColumnDefault::default();
        TextArrays {
            literals,
            values,
            default,
        }
    }
}

/// PostgreSQL's text form of a `text[]`: every element double-quoted, `"` and `\` escaped.
fn array_literal(items: &[String]) -> String {
    let quoted: Vec<String> = (items.iter())
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    ["{", &quoted.join(","), "}"].concat()
}

impl Values for TextArrays {
    fn bind<'q>(&'q self, query: Query<'q>) -> Query<'q> {
        query.bind::<Array<Nullable<Text>>, _>(&self.literals[..])
    }

    /// `None` is never sent: COPY leaves the column out for that row.
    fn copy_value(&self, i: usize) -> &(dyn CopySql + Sync) {
        &self.values[i]
    }

    fn is_default(&self, i: usize) -> bool {
        self.values[i].is_none()
    }

    fn select(&self, v: &str) -> String {
        format!("COALESCE({v}::text[], {})", self.default.sql)
    }

    fn default_slot(&mut self) -> Option<&mut ColumnDefault> {
        Some(&mut self.default)
    }
}

/// A Rust enum stored by label, in a PostgreSQL enum or a text column.
pub trait Label: std::fmt::Debug + Copy + Send + Sync {
    /// The label stored in the database.
    fn label(&self) -> &'static str;
}

/// An enum value written by its label: through the enum's own Diesel `ToSql` for the
/// `unnest` paths, as its label for COPY. The one generic bridge from model enums to COPY.
#[derive(Debug, Clone, Copy)]
pub struct ByLabel<E>(pub E);

impl<ST, E> ToSql<ST, Pg> for ByLabel<E>
where
    E: ToSql<ST, Pg> + Label,
{
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        self.0.to_sql(out)
    }
}

impl<E: Label> CopySql for ByLabel<E> {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0.label().as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(ty.kind(), Kind::Enum(_)) || matches!(*ty, Type::TEXT | Type::VARCHAR)
    }

    tokio_postgres::types::to_sql_checked!();
}
