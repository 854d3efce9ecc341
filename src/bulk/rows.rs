//! How our models lay out their rows for [`crate::bulk`]. Kept here, not in the model files,
//! so each model file can be copied into another project without this module. Each layout
//! destructures its struct without `..`: a new field does not compile until it is written.

use super::{BulkRow, ByLabel, Column, Label};
use crate::models::{Membership, NewTask, Role, TaskStatus, TaskStatusUpdate, UserRow};
use crate::schema::{tasks, team_members, users};

impl Label for TaskStatus {
    fn label(&self) -> &'static str {
        self.as_str()
    }
}

impl Label for Role {
    fn label(&self) -> &'static str {
        self.as_str()
    }
}

impl BulkRow for UserRow {
    type Table = users::table;

    fn columns(rows: &[Self]) -> Vec<Column<'_, users::table>> {
        let (mut email, mut name) = (Vec::new(), Vec::new());
        for UserRow {
            email: e,
            display_name,
        } in rows
        {
            email.push(e.as_str());
            name.push(display_name.as_str());
        }
        vec![
            Column::new(users::email, email),
            Column::new(users::display_name, name),
        ]
    }
}

impl BulkRow for Membership {
    type Table = team_members::table;

    fn columns(rows: &[Self]) -> Vec<Column<'_, team_members::table>> {
        let (mut team, mut user, mut role) = (Vec::new(), Vec::new(), Vec::new());
        for Membership {
            team_id,
            user_id,
            role: r,
        } in rows
        {
            team.push(*team_id);
            user.push(*user_id);
            role.push(ByLabel(*r));
        }
        vec![
            Column::new(team_members::team_id, team),
            Column::new(team_members::user_id, user),
            Column::new(team_members::role, role),
        ]
    }
}

impl BulkRow for NewTask<'_> {
    type Table = tasks::table;

    fn columns<'r>(rows: &'r [Self]) -> Vec<Column<'r, tasks::table>> {
        let n = rows.len();
        let (mut owner, mut title, mut team, mut parent) = (vec![], vec![], vec![], vec![]);
        let (mut description, mut status, mut priority) = (vec![], vec![], vec![]);
        let (mut due, mut checklist) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for row in rows {
            let NewTask {
                owner_id,
                title: t,
                team_id,
                parent_id,
                description: d,
                status: s,
                priority: p,
                due_date,
                checklist: c,
            } = row;
            owner.push(*owner_id);
            title.push(t.as_str());
            team.push(*team_id);
            parent.push(*parent_id);
            description.push(*d);
            status.push(s.map(ByLabel));
            priority.push(p.map(|p| p.get()));
            due.push(*due_date);
            checklist.push(c.clone());
        }
        vec![
            Column::new(tasks::owner_id, owner),
            Column::new(tasks::title, title),
            Column::new(tasks::team_id, team),
            Column::new(tasks::parent_id, parent),
            Column::new(tasks::description, description),
            Column::or_default(tasks::status, status),
            Column::or_default(tasks::priority, priority),
            Column::new(tasks::due_date, due),
            Column::text_arrays(tasks::checklist, checklist),
        ]
    }
}

impl BulkRow for TaskStatusUpdate {
    type Table = tasks::table;

    fn columns(rows: &[Self]) -> Vec<Column<'_, tasks::table>> {
        let (mut id, mut status, mut priority) = (Vec::new(), Vec::new(), Vec::new());
        for TaskStatusUpdate {
            id: i,
            status: s,
            priority: p,
        } in rows
        {
            id.push(*i);
            status.push(ByLabel(*s));
            priority.push(p.get());
        }
        vec![
            Column::new(tasks::id, id),
            Column::new(tasks::status, status),
            Column::new(tasks::priority, priority),
        ]
    }
}
