//! Every route and every status of the API, and keyset pages under concurrent inserts.

use reqwest::Method;
use serde_json::{Value, json};

use super::{Server, get, new_user, post, refused, send};
use crate::support::TestDb;

async fn new_task(server: &Server, owner: i64, title: &str) -> i64 {
    let (status, task) = post(server, "/tasks", json!({"owner_id": owner, "title": title})).await;
    assert_eq!(status, 201, "{task}");
    task["id"].as_i64().unwrap()
}

#[tokio::test]
async fn health_answers_and_unknown_paths_are_404() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    assert_eq!(
        get(&server, "/healthz").await,
        (200, json!({"status": "ok"}))
    );
    assert_eq!(get(&server, "/readyz").await.0, 200);
    refused(get(&server, "/nowhere").await, 404, None);
    // What the layers and the router answer by themselves has the same shape.
    let client = reqwest::Client::new();
    let put = client.put(server.url("/tasks/1")).send().await.unwrap();
    refused(super::answer(put).await, 405, None);
    let huge = json!({"email": "a".repeat(70 * 1024), "display_name": "Ann"});
    refused(post(&server, "/users", huge).await, 413, None);
}

#[tokio::test]
async fn users_are_created_found_and_refused_with_their_constraint() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    let body = json!({"email": "ann@example.com", "display_name": "Ann"});
    let (status, user) = post(&server, "/users", body).await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(user["email"], "ann@example.com");
    assert_eq!(user["display_name"], "Ann");
    let id = user["id"].as_i64().unwrap();
    assert_eq!(get(&server, &format!("/users/{id}")).await, (200, user));

    // The unique index ignores case.
    let again = json!({"email": "ANN@example.com", "display_name": "Ann"});
    refused(
        post(&server, "/users", again).await,
        409,
        Some("users_email_key"),
    );
    let bad = json!({"email": "not an address", "display_name": "Ann"});
    refused(
        post(&server, "/users", bad).await,
        422,
        Some("users_email_format"),
    );
    // Refused by the database's CHECK: its message stays on the server.
    let blank = json!({"email": "bo@example.com", "display_name": "  "});
    let (status, body) = post(&server, "/users", blank).await;
    refused(
        (status, body.clone()),
        422,
        Some("users_display_name_not_blank"),
    );
    assert!(!body.to_string().contains("relation"), "{body}");
    // Wrong shape: a field missing, of the wrong type, or unknown.
    for shape in [
        json!({"email": "cy@example.com"}),
        json!({"email": 7, "display_name": "Cy"}),
        json!({"email": "cy@example.com", "display_name": "Cy", "admin": true}),
    ] {
        refused(post(&server, "/users", shape).await, 422, None);
    }
    // Not JSON at all.
    let client = reqwest::Client::new();
    let garbled = client
        .post(server.url("/users"))
        .header("content-type", "application/json")
        .body("{\"email\":");
    refused(
        super::answer(garbled.send().await.unwrap()).await,
        400,
        None,
    );

    refused(get(&server, "/users/999999999").await, 404, None);
    refused(get(&server, "/users/ann").await, 400, None);
}

#[tokio::test]
async fn a_task_is_created_changed_and_soft_deleted() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    let owner = new_user(&server, "ann@example.com").await;
    let body = json!({"owner_id": owner, "title": " Write docs ", "priority": 1,
                      "description": "the HTTP part", "due_date": "2030-01-31"});
    let (status, task) = post(&server, "/tasks", body).await;
    assert_eq!(status, 201, "{task}");
    let mut keys: Vec<&str> = task
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let shape = [
        "checklist",
        "created_at",
        "description",
        "due_date",
        "id",
        "owner_id",
        "priority",
        "status",
        "team_id",
        "title",
        "updated_at",
    ];
    assert_eq!(keys, shape);
    assert_eq!(task["title"], "Write docs");
    assert_eq!(task["status"], "todo");
    assert_eq!(task["priority"], 1);
    assert_eq!(task["due_date"], "2030-01-31");
    assert_eq!(task["checklist"], json!([]));
    let id = task["id"].as_i64().unwrap();
    let path = format!("/tasks/{id}");
    assert_eq!(get(&server, &path).await, (200, task));

    // Only what is sent changes; null clears a nullable field.
    let change = json!({"status": "done", "priority": 5, "description": null});
    let (status, changed) = send(&server, Method::PATCH, &path, change).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["status"], "done");
    assert_eq!(changed["priority"], 5);
    assert_eq!(changed["description"], Value::Null);
    assert_eq!(changed["title"], "Write docs");
    assert_eq!(changed["due_date"], "2030-01-31");
    assert_eq!(
        send(&server, Method::PATCH, &path, json!({})).await,
        (200, changed)
    );

    let patch = |body| send(&server, Method::PATCH, &path, body);
    refused(patch(json!({"status": "someday"})).await, 422, None);
    refused(
        patch(json!({"priority": 0})).await,
        422,
        Some("tasks_priority_range"),
    );
    refused(
        patch(json!({"title": ""})).await,
        422,
        Some("tasks_title_length"),
    );
    refused(patch(json!({"owner_id": 1})).await, 422, None);

    let (status, body) = send(&server, Method::DELETE, &path, Value::Null).await;
    assert_eq!((status, body), (204, Value::Null));
    refused(get(&server, &path).await, 404, None);
    refused(patch(json!({"status": "todo"})).await, 404, None);
    refused(
        send(&server, Method::DELETE, &path, Value::Null).await,
        404,
        None,
    );
    refused(get(&server, "/tasks/999999999").await, 404, None);
}

#[tokio::test]
async fn a_task_is_refused_with_the_constraint_it_breaks() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    let owner = new_user(&server, "ann@example.com").await;
    let create = |body| post(&server, "/tasks", body);
    let nobody = json!({"owner_id": 999_999_999, "title": "Orphan"});
    refused(create(nobody).await, 422, Some("tasks_owner_id_fkey"));
    let blank = json!({"owner_id": owner, "title": "   "});
    refused(create(blank).await, 422, Some("tasks_title_length"));
    let urgent = json!({"owner_id": owner, "title": "Now", "priority": 9});
    refused(create(urgent).await, 422, Some("tasks_priority_range"));
    let words = json!({"owner_id": owner, "title": "Now", "priority": "high"});
    refused(create(words).await, 422, None);
    let date = json!({"owner_id": owner, "title": "Now", "due_date": "tomorrow"});
    refused(create(date).await, 422, None);
    refused(create(json!({"title": "Whose?"})).await, 422, None);
}

#[tokio::test]
async fn pages_neither_skip_nor_repeat_while_tasks_are_inserted() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    let owner = new_user(&server, "ann@example.com").await;
    let other = new_user(&server, "bo@example.com").await;
    let mut before = Vec::new();
    for n in 0..23 {
        before.push(new_task(&server, owner, &format!("task {n}")).await);
        new_task(&server, other, &format!("theirs {n}")).await;
    }
    let deleted = before.remove(5);
    let gone = format!("/tasks/{deleted}");
    assert_eq!(
        send(&server, Method::DELETE, &gone, Value::Null).await.0,
        204
    );

    // Another client inserts while the pages are read.
    let writer = async {
        for n in 0..15 {
            new_task(&server, owner, &format!("late {n}")).await;
        }
    };
    let reader = async {
        let mut seen: Vec<i64> = Vec::new();
        let mut path = format!("/users/{owner}/tasks?limit=4");
        loop {
            let (status, page) = get(&server, &path).await;
            assert_eq!(status, 200, "{page}");
            let items = page["items"].as_array().unwrap();
            assert!(items.len() <= 4, "{page}");
            for task in items {
                assert_eq!(task["owner_id"], owner, "{task}");
                seen.push(task["id"].as_i64().unwrap());
            }
            match page["next"].as_i64() {
                Some(next) => path = format!("/users/{owner}/tasks?limit=4&after={next}"),
                None => break seen,
            }
            tokio::task::yield_now().await;
        }
    };
    let ((), seen) = tokio::join!(writer, reader);
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "repeated or out of order: {seen:?}"
    );
    for id in &before {
        assert!(seen.contains(id), "skipped {id}: {seen:?}");
    }
    assert!(!seen.contains(&deleted), "{seen:?}");

    let (status, first) = get(&server, &format!("/users/{owner}/tasks")).await;
    assert_eq!(status, 200);
    assert_eq!(
        first["items"].as_array().unwrap().len(),
        20,
        "the default limit"
    );
    let (_, nobody) = get(&server, "/users/999999999/tasks").await;
    assert_eq!(nobody, json!({"items": [], "next": null}));
    for limit in ["0", "101"] {
        let path = format!("/users/{owner}/tasks?limit={limit}");
        refused(get(&server, &path).await, 422, Some("page_limit_range"));
    }
    let path = format!("/users/{owner}/tasks?limit=ten");
    refused(get(&server, &path).await, 422, None);
}

/// A failure the API does not expect (here a column renamed under the running server) is a
/// 500 that says nothing of it; the log has the database's message and the request's id.
#[tokio::test]
async fn a_500_is_logged_with_the_request_id_and_answered_without_details() {
    use diesel_async::SimpleAsyncConnection;
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    let owner = new_user(&server, "dee@example.com").await;
    let id = new_task(&server, owner, "Renamed under us").await;
    let mut conn = db.conn().await;
    conn.batch_execute("ALTER TABLE tasks RENAME COLUMN title TO heading")
        .await
        .unwrap();

    let response = reqwest::Client::new()
        .get(server.url(&format!("/tasks/{id}")))
        .header("x-request-id", "trace-500-me")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-500-me");
    let (status, body) = super::answer(response).await;
    assert_eq!((status, body), (500, json!({"error": "internal error"})));
    // The server's stderr is read on a thread of its own: the line may trail the answer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let logged = loop {
        let log = server.log();
        if let Some(line) = log.iter().find(|l| l.contains("request failed")) {
            break line.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no error logged: {log:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(logged.contains("trace-500-me"), "{logged}");
    assert!(logged.contains("title"), "the database's message: {logged}");
}
