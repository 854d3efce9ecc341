//! One module per table family. Each holds the row struct (`Queryable + Selectable`),
//! the insert struct (`Insertable`), the update struct (`AsChangeset`) and its queries.
//!
//! A new table: its migration in `migrations/`, `src/schema.rs` printed again, a file here
//! and its `pub mod` / `pub use` lines below (docs/first-model.md walks through it). If its
//! rows are written in bulk, its `BulkRow` impl goes in `src/bulk/rows.rs` beside the
//! others; a query that joins several models goes in `src/reports.rs`, eager loading in
//! `src/loaders.rs`.

pub mod bug;
pub mod comment;
pub mod notification_channel;
pub mod page;
pub mod tag;
pub mod task;
pub mod team;
pub mod user;

pub use bug::{Bug, BugDetails, NewBug};
pub use comment::{Comment, CommentOn};
pub use notification_channel::{Channel, NotificationChannel};
pub use page::{Limit, Page, PageRequest};
pub use tag::{NewTag, Tag, TagName, TaskTag};
pub use task::{
    NewTask, Priority, Task, TaskChanges, TaskStatus, TaskStatusUpdate, Title, TreeTask,
};
pub use team::{Membership, NewTeam, Role, Team, TeamChanges, TeamMember};
pub use user::{Email, NewUser, Preferences, Theme, User, UserChanges, UserRow};
#[cfg(test)]
mod tests;
