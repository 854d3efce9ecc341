//! Users: the owners of tasks and members of teams. Shows a validated newtype (`Email`),
//! a typed `jsonb` column (`Preferences`) and a public `Uuid` beside the internal id.

use std::io::Write;

use chrono::{DateTime, Utc};
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::prelude::*;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{Jsonb, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::db::CommittedDsl;
use crate::db::fns::lower;
use crate::schema::users;
use crate::{Error, Result};

/// An email address, checked before any SQL. The same rule is the `users_email_format`
/// CHECK, so rows written by other clients obey it too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, AsExpression, FromSqlRow, Serialize)]
#[diesel(sql_type = Text)]
pub struct Email(String);

impl Email {
    /// Trims and checks the address: one `@`, a dot in the domain, no spaces, no control
    /// or direction-changing characters (an address that displays as another), ≤ 254 bytes.
    pub fn parse(raw: &str) -> Result<Email> {
        let email = raw.trim();
        let valid = email.len() <= 254
            && !email
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || bidi(c))
            && match email.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && !domain.contains('@')
                        && domain
                            .split_once('.')
                            .is_some_and(|(name, tld)| !name.is_empty() && !tld.is_empty())
                }
                None => false,
            };
        if valid {
            Ok(Email(email.to_owned()))
        } else {
            // The input is the client's: shown escaped, and no more than a screen line of it.
            let shown: String = raw.chars().take(80).collect();
            let cut = if shown.len() < raw.len() { "..." } else { "" };
            Err(Error::invalid(
                "users_email_format",
                format!("{shown:?}{cut} is not an email address"),
            ))
        }
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Unicode's explicit direction marks, embeddings, overrides and isolates. (Here, not
/// shared with `db::url`: this file is copied into other projects alone.)
fn bidi(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

impl ToSql<Text, Pg> for Email {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <str as ToSql<Text, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<Text, Pg> for Email {
    // Rows come from the database, whose CHECK already holds them to the rule.
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        <String as FromSql<Text, Pg>>::from_sql(bytes).map(Email)
    }
}

/// A user's settings, stored as `jsonb`. Missing keys take their defaults, so old rows
/// keep loading when a field is added.
#[derive(Debug, Clone, Default, PartialEq, AsExpression, FromSqlRow, Serialize, Deserialize)]
#[diesel(sql_type = Jsonb)]
#[serde(default)]
pub struct Preferences {
    /// `"light"` or `"dark"`.
    pub theme: Theme,
    /// Send a daily digest of due tasks.
    pub daily_digest: bool,
    /// IANA time zone name, e.g. `Europe/Berlin`.
    pub time_zone: Option<String>,
}

/// UI theme inside [`Preferences`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Theme {
    /// Light theme (the default).
    #[default]
    Light,
    /// Dark theme.
    Dark,
}

impl ToSql<Jsonb, Pg> for Preferences {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(&[1])?; // jsonb's binary format: a version byte, then the JSON text
        serde_json::to_writer(out, self)?;
        Ok(IsNull::No)
    }
}

impl FromSql<Jsonb, Pg> for Preferences {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        let value = <serde_json::Value as FromSql<Jsonb, Pg>>::from_sql(bytes)?;
        Ok(serde_json::from_value(value)?)
    }
}

/// A row of `users`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = users, check_for_backend(Pg))]
pub struct User {
    /// Primary key: internal, never shown outside.
    pub id: i64,
    /// The id to show outside (URLs, APIs): a random UUID.
    pub public_id: Uuid,
    /// Validated email, unique ignoring case.
    pub email: Email,
    /// Typed view of the `preferences` jsonb column.
    pub preferences: Preferences,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Last change, kept by the `updated_at` trigger.
    pub updated_at: DateTime<Utc>,
    /// Was `name` until the zero-downtime rename in migrations 2025-02-01-*.
    pub display_name: String,
}

/// A user to insert; the database fills in ids, preferences and timestamps.
#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    /// Validated email.
    pub email: &'a Email,
    /// Name to show, 1 to 200 characters.
    pub display_name: &'a str,
}

/// A partial update: `None` leaves the column as it is.
#[derive(Debug, Default, Clone, AsChangeset)]
#[diesel(table_name = users)]
pub struct UserChanges {
    /// New email.
    pub email: Option<Email>,
    /// New display name.
    pub display_name: Option<String>,
    /// New preferences (replaces the whole object).
    pub preferences: Option<Preferences>,
}

impl UserChanges {
    fn is_empty(&self) -> bool {
        self.email.is_none() && self.display_name.is_none() && self.preferences.is_none()
    }
}

impl User {
    /// Inserts a user and returns the stored row.
    pub async fn create(mut conn: &AsyncPgConnection, new: &NewUser<'_>) -> Result<User> {
        Ok(diesel::insert_into(users::table)
            .values(new)
            .returning(User::as_returning())
            .get_committed(&mut conn)
            .await?)
    }

    /// The user with this id, or `Error::NotFound`.
    pub async fn find(mut conn: &AsyncPgConnection, id: i64) -> Result<User> {
        Ok(users::table
            .find(id)
            .select(User::as_select())
            .first(&mut conn)
            .await?)
    }

    /// The user with this public id (the one to put in URLs).
    pub async fn by_public_id(mut conn: &AsyncPgConnection, public_id: Uuid) -> Result<User> {
        Ok(users::table
            .filter(users::public_id.eq(public_id))
            .select(User::as_select())
            .first(&mut conn)
            .await?)
    }

    /// The user with this email, ignoring case (served by the `lower(email)` index). Both
    /// sides go through SQL's `lower()`, as the unique index does: Rust's lowercasing differs
    /// from the database's for some letters.
    pub async fn by_email(mut conn: &AsyncPgConnection, email: &str) -> Result<User> {
        Ok(users::table
            .filter(lower(users::email).eq(lower(email.trim())))
            .select(User::as_select())
            .first(&mut conn)
            .await?)
    }

    /// Users whose preferences contain `subset`, e.g. `{"theme": "dark"}` (GIN index).
    pub async fn with_preferences(
        mut conn: &AsyncPgConnection,
        subset: &serde_json::Value,
    ) -> Result<Vec<User>> {
        Ok(users::table
            .filter(users::preferences.contains(subset))
            .order(users::id)
            .select(User::as_select())
            .load(&mut conn)
            .await?)
    }

    /// All users, by id (a page at a time: `User::list`, in `page.rs`).
    pub async fn all(mut conn: &AsyncPgConnection) -> Result<Vec<User>> {
        Ok(users::table
            .order(users::id)
            .select(User::as_select())
            .load(&mut conn)
            .await?)
    }

    /// Applies the set fields of `changes`; the trigger moves `updated_at`.
    pub async fn update(
        mut conn: &AsyncPgConnection,
        id: i64,
        changes: &UserChanges,
    ) -> Result<User> {
        if changes.is_empty() {
            return User::find(conn, id).await;
        }
        Ok(diesel::update(users::table.find(id))
            .set(changes)
            .returning(User::as_returning())
            .get_committed(&mut conn)
            .await?)
    }

    /// Deletes the user and, by cascade, their tasks and memberships. A user who wrote
    /// comments is kept (`Error::ForeignKey`): comments restrict the delete.
    pub async fn delete(mut conn: &AsyncPgConnection, id: i64) -> Result<()> {
        let deleted = diesel::delete(users::table.find(id))
            .execute(&mut conn)
            .await?;
        if deleted == 0 {
            return Err(Error::NotFound);
        }
        Ok(())
    }
}

/// A user row for bulk writes (seeding, imports): owned, so large batches need no borrows.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    /// Validated email.
    pub email: Email,
    /// Name to show, 1 to 200 characters.
    pub display_name: String,
}
