//! Teams and their members: a many-to-many link (`team_members`) that carries a payload,
//! the member's role and when they joined.

use std::io::Write;

use chrono::{DateTime, Utc};
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::prelude::*;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use crate::db::CommittedDsl;
use crate::models::User;
use crate::schema::{team_members, teams, users};
use crate::{Error, Result};

/// A row of `teams`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = teams, check_for_backend(Pg))]
pub struct Team {
    /// Primary key.
    pub id: i64,
    /// Unique team name.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Last change, kept by the `updated_at` trigger.
    pub updated_at: DateTime<Utc>,
}

/// A team to insert.
#[derive(Debug, Insertable)]
#[diesel(table_name = teams)]
pub struct NewTeam<'a> {
    /// Unique team name.
    pub name: &'a str,
}

/// A partial update of a team.
#[derive(Debug, Default, Clone, AsChangeset)]
#[diesel(table_name = teams)]
pub struct TeamChanges {
    /// New name.
    pub name: Option<String>,
}

/// A member's role, stored as text and guarded by `team_members_role_check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow, Serialize)]
#[diesel(sql_type = Text)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Owns the team (what each role may do is the application's rule).
    Owner,
    /// Administers the team.
    Admin,
    /// An ordinary member: the column default.
    Member,
}

impl Role {
    /// The value stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// The role stored as `name`; any other name is `Error::Invalid` naming
    /// `team_members_role_check`, checked before any SQL.
    pub fn parse(name: &str) -> Result<Role> {
        match name {
            "owner" => Ok(Role::Owner),
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            // The name itself is not repeated: it may be anything a client sent.
            _ => Err(Error::invalid(
                "team_members_role_check",
                "a role is owner, admin or member",
            )),
        }
    }
}

impl ToSql<Text, Pg> for Role {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(self.as_str().as_bytes())?;
        Ok(IsNull::No)
    }
}

impl FromSql<Text, Pg> for Role {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        match bytes.as_bytes() {
            b"owner" => Ok(Role::Owner),
            b"admin" => Ok(Role::Admin),
            b"member" => Ok(Role::Member),
            other => Err(format!("unknown role {:?}", String::from_utf8_lossy(other)).into()),
        }
    }
}

/// A row of `team_members`: who is in which team, since when, as what.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Queryable,
    Selectable,
    Identifiable,
    Associations,
    Insertable,
    Serialize,
)]
#[diesel(table_name = team_members, primary_key(team_id, user_id))]
#[diesel(belongs_to(Team), belongs_to(User), check_for_backend(Pg))]
pub struct TeamMember {
    /// The team.
    pub team_id: i64,
    /// The member.
    pub user_id: i64,
    /// The member's role.
    pub role: Role,
    /// When they joined.
    pub joined_at: DateTime<Utc>,
}

impl Team {
    /// Inserts a team; a taken name is `Error::Conflict { constraint: "teams_name_key" }`.
    pub async fn create(mut conn: &AsyncPgConnection, new: &NewTeam<'_>) -> Result<Team> {
        Ok(diesel::insert_into(teams::table)
            .values(new)
            .returning(Team::as_returning())
            .get_committed(&mut conn)
            .await?)
    }

    /// The team with this id.
    pub async fn find(mut conn: &AsyncPgConnection, id: i64) -> Result<Team> {
        Ok(teams::table
            .find(id)
            .select(Team::as_select())
            .first(&mut conn)
            .await?)
    }

    /// All teams, by id (a page at a time: `Team::list`).
    pub async fn all(mut conn: &AsyncPgConnection) -> Result<Vec<Team>> {
        Ok(teams::table
            .order(teams::id)
            .select(Team::as_select())
            .load(&mut conn)
            .await?)
    }

    /// Renames or otherwise changes a team.
    pub async fn update(
        mut conn: &AsyncPgConnection,
        id: i64,
        changes: &TeamChanges,
    ) -> Result<Team> {
        if changes.name.is_none() {
            return Team::find(conn, id).await;
        }
        Ok(diesel::update(teams::table.find(id))
            .set(changes)
            .returning(Team::as_returning())
            .get_committed(&mut conn)
            .await?)
    }

    /// Deletes the team; memberships go with it, its tasks stay without a team.
    pub async fn delete(mut conn: &AsyncPgConnection, id: i64) -> Result<()> {
        match diesel::delete(teams::table.find(id))
            .execute(&mut conn)
            .await?
        {
            0 => Err(Error::NotFound),
            _ => Ok(()),
        }
    }

    /// Adds a user to the team; adding them twice is `Error::Conflict`.
    pub async fn add_member(
        mut conn: &AsyncPgConnection,
        team_id: i64,
        user_id: i64,
        role: Role,
    ) -> Result<TeamMember> {
        Ok(diesel::insert_into(team_members::table)
            .values((
                team_members::team_id.eq(team_id),
                team_members::user_id.eq(user_id),
                team_members::role.eq(role),
            ))
            .returning(TeamMember::as_returning())
            .get_committed(&mut conn)
            .await?)
    }

    /// Removes a user from the team.
    pub async fn remove_member(
        mut conn: &AsyncPgConnection,
        team_id: i64,
        user_id: i64,
    ) -> Result<()> {
        let deleted = diesel::delete(team_members::table.find((team_id, user_id)))
            .execute(&mut conn)
            .await?;
        match deleted {
            0 => Err(Error::NotFound),
            _ => Ok(()),
        }
    }

    /// The team's members with their membership row, by join date.
    pub async fn members(
        mut conn: &AsyncPgConnection,
        team_id: i64,
    ) -> Result<Vec<(User, TeamMember)>> {
        Ok(team_members::table
            .inner_join(users::table)
            .filter(team_members::team_id.eq(team_id))
            .order((team_members::joined_at, users::id))
            .select((User::as_select(), TeamMember::as_select()))
            .load(&mut conn)
            .await?)
    }

    /// The teams a user belongs to, through the link table.
    pub async fn of_user(mut conn: &AsyncPgConnection, user: &User) -> Result<Vec<Team>> {
        Ok(TeamMember::belonging_to(user)
            .inner_join(teams::table)
            .order(teams::name)
            .select(Team::as_select())
            .load(&mut conn)
            .await?)
    }
}

/// A membership for bulk writes; upsert it on `(team_id, user_id)` to change roles.
#[derive(Debug, Clone, PartialEq)]
pub struct Membership {
    /// The team.
    pub team_id: i64,
    /// The member.
    pub user_id: i64,
    /// The role to give (or change to, on upsert).
    pub role: Role,
}
