//! Inheritance, enforced by the database, not by convention: single-table
//! (notification_channels) and polymorphic (comments). Joined-table (bugs) is in `bugs.rs`.

use crate::support::{TestDb, assert_invalid, count, task, user};
use app::Error;
use app::models::*;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;

#[tokio::test]
async fn single_table_rows_load_as_enum_variants() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let ann = user(&mut conn, "ann@example.com").await;
    let channels = [
        Channel::Email {
            address: Email::parse("ann+alerts@example.com").unwrap(),
        },
        Channel::Sms {
            phone: "+14155550100".into(),
        },
        Channel::Webhook {
            url: "https://hooks.example.com/ann".into(),
        },
    ];
    for channel in &channels {
        let stored = NotificationChannel::create(&conn, ann.id, channel)
            .await
            .unwrap();
        assert_eq!(&stored.channel, channel);
    }
    let loaded: Vec<_> = NotificationChannel::of_user(&conn, ann.id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.channel)
        .collect();
    assert_eq!(loaded, channels, "ordered by kind: email, sms, webhook");

    // Composite unique (user_id, kind): one channel of each kind per user.
    let second = Channel::Sms {
        phone: "+14155550199".into(),
    };
    let err = NotificationChannel::create(&conn, ann.id, &second)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Conflict { constraint } if constraint == "notification_channels_user_kind_key"),
        "{err:?}"
    );
}

#[tokio::test]
async fn single_table_check_refuses_fields_of_another_kind() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let ann = user(&mut conn, "ann@example.com").await;
    for sql in [
        // an email channel without its address
        "INSERT INTO notification_channels (user_id, kind) VALUES ($1, 'email')",
        // an sms channel that also carries a webhook
        "INSERT INTO notification_channels (user_id, kind, phone, webhook_url) \
         VALUES ($1, 'sms', '+14155550100', 'https://x.example.com')",
        // an unknown kind
        "INSERT INTO notification_channels (user_id, kind, email) VALUES ($1, 'pager', 'a@b.co')",
    ] {
        let err = diesel::sql_query(sql)
            .bind::<BigInt, _>(ann.id)
            .execute(&mut conn)
            .await
            .map_err(Error::from)
            .unwrap_err();
        assert_invalid(&err, "notification_channels_fields");
    }
    let bad_phone = Channel::Sms {
        phone: "0800-CALL-ME".into(),
    };
    let err = NotificationChannel::create(&conn, ann.id, &bad_phone)
        .await
        .unwrap_err();
    assert_invalid(&err, "notification_channels_phone_format");
    let plain_http = Channel::Webhook {
        url: "http://insecure.example.com".into(),
    };
    let err = NotificationChannel::create(&conn, ann.id, &plain_http)
        .await
        .unwrap_err();
    assert_invalid(&err, "notification_channels_webhook_https");
    assert_eq!(count(&mut conn, "notification_channels").await, 0);
}

#[tokio::test]
async fn polymorphic_comments_on_tasks_and_teams() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let ann = user(&mut conn, "ann@example.com").await;
    let t = task(&mut conn, &ann, "Discuss me").await;
    let team = Team::create(&conn, &NewTeam { name: "Core" })
        .await
        .unwrap();

    let on_task = Comment::create(&conn, ann.id, CommentOn::Task(t.id), "First!")
        .await
        .unwrap();
    let on_team = Comment::create(&conn, ann.id, CommentOn::Team(team.id), "Hello team")
        .await
        .unwrap();
    assert_eq!(on_task.on().unwrap(), CommentOn::Task(t.id));
    assert_eq!(on_team.on().unwrap(), CommentOn::Team(team.id));
    assert_eq!(
        Comment::list(&conn, CommentOn::Task(t.id)).await.unwrap(),
        vec![on_task]
    );
    assert_eq!(
        Comment::list(&conn, CommentOn::Team(team.id))
            .await
            .unwrap(),
        vec![on_team]
    );

    // Each parent has a real foreign key: a missing parent is refused, a deleted one cascades.
    let err = Comment::create(&conn, ann.id, CommentOn::Task(t.id + 99), "?")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::ForeignKey { constraint } if constraint == "comments_task_id_fkey")
    );
    Task::delete(&conn, t.id).await.unwrap();
    assert!(
        Comment::list(&conn, CommentOn::Task(t.id))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(count(&mut conn, "comments").await, 1);
}

#[tokio::test]
async fn polymorphic_check_demands_exactly_one_parent() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let ann = user(&mut conn, "ann@example.com").await;
    let t = task(&mut conn, &ann, "Parent").await;
    let team = Team::create(&conn, &NewTeam { name: "Core" })
        .await
        .unwrap();
    for (task_id, team_id) in [(Some(t.id), Some(team.id)), (None, None)] {
        let err = diesel::sql_query(
            "INSERT INTO comments (author_id, task_id, team_id, body) VALUES ($1, $2, $3, 'x')",
        )
        .bind::<BigInt, _>(ann.id)
        .bind::<diesel::sql_types::Nullable<BigInt>, _>(task_id)
        .bind::<diesel::sql_types::Nullable<BigInt>, _>(team_id)
        .execute(&mut conn)
        .await
        .map_err(Error::from)
        .unwrap_err();
        assert_invalid(&err, "comments_one_parent");
    }
    assert_eq!(count(&mut conn, "comments").await, 0);
}

#[tokio::test]
async fn comment_authors_restrict_deleting_the_user() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let ann = user(&mut conn, "ann@example.com").await;
    let team = Team::create(&conn, &NewTeam { name: "Core" })
        .await
        .unwrap();
    let comment = Comment::create(&conn, ann.id, CommentOn::Team(team.id), "Mine")
        .await
        .unwrap();

    let err = User::delete(&conn, ann.id).await.unwrap_err();
    assert!(
        matches!(&err, Error::ForeignKey { constraint } if constraint == "comments_author_id_fkey"),
        "{err:?}"
    );
    assert_eq!(
        User::find(&conn, ann.id).await.unwrap(),
        ann,
        "the user is still there"
    );

    Comment::delete(&conn, comment.id).await.unwrap();
    User::delete(&conn, ann.id).await.unwrap();
}
