//! Single-table inheritance: every kind of notification channel in one table, told apart by
//! `kind`, with kind-specific nullable columns. The `notification_channels_fields` CHECK
//! makes each kind carry exactly its own fields; Rust sees a `Channel` enum with data.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use crate::db::CommittedDsl;
use crate::models::Email;
use crate::schema::notification_channels;
use crate::{Error, Result};

/// Where a notification goes: one variant per `kind`, each with its own fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Channel {
    /// An email to this address (`kind = 'email'`).
    Email {
        /// Validated address.
        address: Email,
    },
    /// A text message (`kind = 'sms'`).
    Sms {
        /// Phone number in E.164 form, e.g. `+4915112345678`.
        phone: String,
    },
    /// An HTTPS POST (`kind = 'webhook'`).
    Webhook {
        /// The endpoint, `https://` only.
        url: String,
    },
}

impl Channel {
    /// The discriminator stored in `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Channel::Email { .. } => "email",
            Channel::Sms { .. } => "sms",
            Channel::Webhook { .. } => "webhook",
        }
    }
}

/// A notification channel of a user.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotificationChannel {
    /// Primary key.
    pub id: i64,
    /// The user notified.
    pub user_id: i64,
    /// Where notifications go, from `kind` and that kind's column.
    pub channel: Channel,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// The table's row as stored: the discriminator and every kind's columns.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = notification_channels, check_for_backend(Pg))]
struct Row {
    id: i64,
    user_id: i64,
    kind: String,
    email: Option<Email>,
    phone: Option<String>,
    webhook_url: Option<String>,
    created_at: DateTime<Utc>,
}

impl TryFrom<Row> for NotificationChannel {
    type Error = Error;

    fn try_from(row: Row) -> Result<Self> {
        let channel = match (row.kind.as_str(), row.email, row.phone, row.webhook_url) {
            ("email", Some(address), None, None) => Channel::Email { address },
            ("sms", None, Some(phone), None) => Channel::Sms { phone },
            ("webhook", None, None, Some(url)) => Channel::Webhook { url },
            // The CHECK rules this out; a row like it means the constraint was dropped.
            (kind, ..) => {
                return Err(Error::invalid(
                    "notification_channels_fields",
                    format!("channel {} of kind {kind:?} has the wrong fields", row.id),
                ));
            }
        };
        Ok(NotificationChannel {
            id: row.id,
            user_id: row.user_id,
            channel,
            created_at: row.created_at,
        })
    }
}

impl NotificationChannel {
    /// Adds a channel; a second channel of the same kind for a user is `Error::Conflict`.
    pub async fn create(
        mut conn: &AsyncPgConnection,
        user_id: i64,
        channel: &Channel,
    ) -> Result<NotificationChannel> {
        let (email, phone, url) = match channel {
            Channel::Email { address } => (Some(address), None, None),
            Channel::Sms { phone } => (None, Some(phone), None),
            Channel::Webhook { url } => (None, None, Some(url)),
        };
        let row = diesel::insert_into(notification_channels::table)
            .values((
                notification_channels::user_id.eq(user_id),
                notification_channels::kind.eq(channel.kind()),
                notification_channels::email.eq(email),
                notification_channels::phone.eq(phone),
                notification_channels::webhook_url.eq(url),
            ))
            .returning(Row::as_returning())
            .get_committed(&mut conn)
            .await?;
        row.try_into()
    }

    /// A user's channels, by kind.
    pub async fn of_user(
        mut conn: &AsyncPgConnection,
        user_id: i64,
    ) -> Result<Vec<NotificationChannel>> {
        let rows: Vec<Row> = notification_channels::table
            .filter(notification_channels::user_id.eq(user_id))
            .order(notification_channels::kind)
            .select(Row::as_select())
            .load(&mut conn)
            .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }
}
