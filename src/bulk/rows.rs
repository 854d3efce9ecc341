//! How our models lay out their rows for [`crate::bulk`]. Kept here, not in the model files,
//! so each model file can be copied into another project without this module.

use super::{BulkRow, Column, Values};
use crate::models::{Membership, NewTask, Priority, TaskStatus, TaskStatusUpdate, UserRow};

impl BulkRow for UserRow {
    const TABLE: &'static str = "users";

    fn columns(rows: &[Self]) -> Vec<Column> {
        vec![
            Column::new(
                "email",
                Values::Text(rows.iter().map(|r| r.email.as_str().to_owned()).collect()),
            ),
            Column::new(
                "display_name",
                Values::Text(rows.iter().map(|r| r.display_name.clone()).collect()),
            ),
        ]
    }
}

impl BulkRow for Membership {
    const TABLE: &'static str = "team_members";

    fn columns(rows: &[Self]) -> Vec<Column> {
        vec![
            Column::new(
                "team_id",
                Values::BigInt(rows.iter().map(|r| r.team_id).collect()),
            ),
            Column::new(
                "user_id",
                Values::BigInt(rows.iter().map(|r| r.user_id).collect()),
            ),
            Column::new(
                "role",
                Values::Text(rows.iter().map(|r| r.role.as_str().to_owned()).collect()),
            ),
        ]
    }
}

impl BulkRow for NewTask<'_> {
    const TABLE: &'static str = "tasks";

    fn columns(rows: &[Self]) -> Vec<Column> {
        // unnest cannot say DEFAULT per row: fill in the columns' defaults here.
        vec![
            Column::new(
                "owner_id",
                Values::BigInt(rows.iter().map(|r| r.owner_id).collect()),
            ),
            Column::new(
                "title",
                Values::Text(rows.iter().map(|r| r.title.as_str().to_owned()).collect()),
            ),
            Column::new(
                "team_id",
                Values::NullableBigInt(rows.iter().map(|r| r.team_id).collect()),
            ),
            Column::new(
                "parent_id",
                Values::NullableBigInt(rows.iter().map(|r| r.parent_id).collect()),
            ),
            Column::new(
                "description",
                Values::NullableText(
                    rows.iter()
                        .map(|r| r.description.map(str::to_owned))
                        .collect(),
                ),
            ),
            Column::new(
                "status",
                Values::TaskStatus(
                    rows.iter()
                        .map(|r| r.status.unwrap_or(TaskStatus::Todo))
                        .collect(),
                ),
            ),
            Column::new(
                "priority",
                Values::SmallInt(
                    rows.iter()
                        .map(|r| r.priority.unwrap_or(Priority::NORMAL).get())
                        .collect(),
                ),
            ),
            Column::new(
                "due_date",
                Values::NullableDate(rows.iter().map(|r| r.due_date).collect()),
            ),
        ]
    }
}

impl BulkRow for TaskStatusUpdate {
    const TABLE: &'static str = "tasks";

    fn columns(rows: &[Self]) -> Vec<Column> {
        vec![
            Column::new("id", Values::BigInt(rows.iter().map(|r| r.id).collect())),
            Column::new(
                "status",
                Values::TaskStatus(rows.iter().map(|r| r.status).collect()),
            ),
            Column::new(
                "priority",
                Values::SmallInt(rows.iter().map(|r| r.priority.get()).collect()),
            ),
        ]
    }
}
