//! Users: the owners of tasks and members of teams.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use crate::Result;
use crate::schema::users;

diesel::define_sql_function! {
    /// SQL `lower(text)`, to match the case-insensitive unique index on email.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// A row of `users`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = users, check_for_backend(Pg))]
pub struct User {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A user to insert; the database fills in id and timestamps.
#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub email: &'a str,
    pub name: &'a str,
}

/// A partial update: `None` leaves the column as it is.
#[derive(Debug, Default, Clone, AsChangeset)]
#[diesel(table_name = users)]
pub struct UserChanges {
    pub email: Option<String>,
    pub name: Option<String>,
}

impl UserChanges {
    fn is_empty(&self) -> bool {
        self.email.is_none() && self.name.is_none()
    }
}

impl User {
    /// Inserts a user and returns the stored row.
    pub async fn create(conn: &mut AsyncPgConnection, new: &NewUser<'_>) -> Result<User> {
        Ok(diesel::insert_into(users::table)
            .values(new)
            .returning(User::as_returning())
            .get_result(conn)
            .await?)
    }

    /// The user with this id, or `Error::NotFound`.
    pub async fn find(conn: &mut AsyncPgConnection, id: i64) -> Result<User> {
        Ok(users::table
            .find(id)
            .select(User::as_select())
            .first(conn)
            .await?)
    }

    /// The user with this email, ignoring case.
    pub async fn by_email(conn: &mut AsyncPgConnection, email: &str) -> Result<User> {
        Ok(users::table
            .filter(lower(users::email).eq(email.to_lowercase()))
            .select(User::as_select())
            .first(conn)
            .await?)
    }

    /// All users, by id.
    pub async fn all(conn: &mut AsyncPgConnection) -> Result<Vec<User>> {
        Ok(users::table
            .order(users::id)
            .select(User::as_select())
            .load(conn)
            .await?)
    }

    /// Applies the set fields of `changes`; the trigger moves `updated_at`.
    pub async fn update(
        conn: &mut AsyncPgConnection,
        id: i64,
        changes: &UserChanges,
    ) -> Result<User> {
        if changes.is_empty() {
            return User::find(conn, id).await;
        }
        Ok(diesel::update(users::table.find(id))
            .set(changes)
            .returning(User::as_returning())
            .get_result(conn)
            .await?)
    }

    /// Deletes the user and, by cascade, their tasks and memberships.
    pub async fn delete(conn: &mut AsyncPgConnection, id: i64) -> Result<()> {
        let deleted = diesel::delete(users::table.find(id)).execute(conn).await?;
        if deleted == 0 {
            return Err(crate::Error::NotFound);
        }
        Ok(())
    }
}
