//! One module per table family. Each holds the row struct (`Queryable + Selectable`),
//! the insert struct (`Insertable`), the update struct (`AsChangeset`) and its queries.

pub mod tag;
pub mod task;
pub mod team;
pub mod user;

pub use tag::{NewTag, Tag, TaskTag};
pub use task::{NewTask, Task, TaskChanges, TaskStatus};
pub use team::{NewTeam, Role, Team, TeamChanges, TeamMember};
pub use user::{NewUser, User, UserChanges};
