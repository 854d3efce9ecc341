//! Keyset pages: `WHERE id > after ORDER BY id LIMIT n + 1`. The extra row says whether a
//! next page exists, so no `COUNT`; and unlike `OFFSET`, a page costs the same however deep
//! it is, and rows inserted or deleted meanwhile neither repeat nor skip rows.
//!
//! The listing functions of the models are here, not in their files, so that a model file
//! still copies alone (docs/advanced-models.md): `user.rs` needs nothing of this module.
//! A model `migrate generate model` writes has its `list` in its own file, on the
//! crate-visible helpers here (`after_id`, `fetch`, `from_rows`).

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use crate::models::{Task, Team, User};
use crate::schema::{tasks, teams, users};
use crate::{Error, Result};

/// How many rows a page holds: 1 to [`Limit::MAX`], checked before any SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Limit(i64);

impl Limit {
    /// The size of a page when none is asked for.
    pub const DEFAULT: Limit = Limit(20);
    /// The largest page.
    pub const MAX: i64 = 100;

    /// Checks the range; outside it is `Error::Invalid { constraint: "page_limit_range" }`
    /// (a rule of ours: no table holds such a CHECK).
    pub fn new(value: i64) -> Result<Limit> {
        match value {
            1..=Limit::MAX => Ok(Limit(value)),
            _ => Err(Error::invalid(
                "page_limit_range",
                format!("a page holds 1 to {} rows, not {value}", Limit::MAX),
            )),
        }
    }

    /// The number of rows.
    pub fn get(self) -> i64 {
        self.0
    }

    /// Rows to fetch: one more than the page, to learn whether another follows.
    pub(crate) fn fetch(self) -> i64 {
        self.0 + 1
    }
}

impl Default for Limit {
    fn default() -> Self {
        Limit::DEFAULT
    }
}

/// Which page to read: the rows with an id above `after` (all when `None`), `limit` of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// The `next` of the page before; `None` for the first page.
    pub after: Option<i64>,
    /// Rows per page.
    pub limit: Limit,
}

impl PageRequest {
    /// From query parameters such as `?limit=20&after=ID`: no limit takes
    /// [`Limit::DEFAULT`], one outside 1 to 100 is `Error::Invalid`.
    pub fn new(after: Option<i64>, limit: Option<i64>) -> Result<PageRequest> {
        let limit = limit.map(Limit::new).transpose()?.unwrap_or_default();
        Ok(PageRequest { after, limit })
    }

    /// The request for the page after `page`, or `None` when `page` was the last.
    pub fn next<T>(self, page: &Page<T>) -> Option<PageRequest> {
        page.next.map(|after| PageRequest {
            after: Some(after),
            ..self
        })
    }

    /// The lower bound of the ids. Without `after` it is the smallest bigint, which no
    /// identity column hands out, so every page is one statement shape (cached, prepared).
    pub(crate) fn after_id(self) -> i64 {
        self.after.unwrap_or(i64::MIN)
    }
}

/// One page of rows by ascending id; serialized as `{"items": [...], "next": ID | null}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    /// The rows, by id.
    pub items: Vec<T>,
    /// The id to pass as `after` for the next page; `None` on the last page.
    pub next: Option<i64>,
}

impl<T> Page<T> {
    /// Cuts the `limit + 1` rows fetched to a page; the extra row, if any, says there is more.
    pub(crate) fn from_rows(
        mut rows: Vec<T>,
        page: PageRequest,
        id: impl Fn(&T) -> i64,
    ) -> Page<T> {
        let limit = page.limit.get() as usize;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = if more { rows.last().map(id) } else { None };
        Page { items: rows, next }
    }
}

impl User {
    /// A page of users by id.
    pub async fn list(mut conn: &AsyncPgConnection, page: PageRequest) -> Result<Page<User>> {
        let rows = users::table
            .filter(users::id.gt(page.after_id()))
            .order(users::id)
            .limit(page.limit.fetch())
            .select(User::as_select())
            .load(&mut conn)
            .await?;
        Ok(Page::from_rows(rows, page, |u| u.id))
    }
}

impl Team {
    /// A page of teams by id.
    pub async fn list(mut conn: &AsyncPgConnection, page: PageRequest) -> Result<Page<Team>> {
        let rows = teams::table
            .filter(teams::id.gt(page.after_id()))
            .order(teams::id)
            .limit(page.limit.fetch())
            .select(Team::as_select())
            .load(&mut conn)
            .await?;
        Ok(Page::from_rows(rows, page, |t| t.id))
    }
}

impl Task {
    /// A page of an owner's live tasks by id; an unknown owner has an empty page. The index
    /// `tasks_owner_id_id_idx` (owner_id, id) hands the rows over in order: a page reads
    /// `limit + 1` of them, however many tasks the owner has.
    pub async fn list_for_owner(
        mut conn: &AsyncPgConnection,
        owner_id: i64,
        page: PageRequest,
    ) -> Result<Page<Task>> {
        let rows = Task::live()
            .filter(tasks::owner_id.eq(owner_id))
            .filter(tasks::id.gt(page.after_id()))
            .order(tasks::id)
            .limit(page.limit.fetch())
            .select(Task::as_select())
            .load(&mut conn)
            .await?;
        Ok(Page::from_rows(rows, page, |t| t.id))
    }

    /// A page of a team's live tasks by id; an unknown team has an empty page. The index
    /// `tasks_team_id_id_idx` (team_id, id) hands the rows over in order, as
    /// `tasks_owner_id_id_idx` does for [`Task::list_for_owner`].
    pub async fn list_for_team(
        mut conn: &AsyncPgConnection,
        team_id: i64,
        page: PageRequest,
    ) -> Result<Page<Task>> {
        let rows = Task::live()
            .filter(tasks::team_id.eq(team_id))
            .filter(tasks::id.gt(page.after_id()))
            .order(tasks::id)
            .limit(page.limit.fetch())
            .select(Task::as_select())
            .load(&mut conn)
            .await?;
        Ok(Page::from_rows(rows, page, |t| t.id))
    }
}
