//! Input PostgreSQL would refuse with an error of its own (a NUL character, a date before
//! its first day) is a 422, never a 500; `null` for a field that cannot be cleared is a
//! 422; a request id is echoed only when it is a plain token.

use reqwest::Method;
use serde_json::json;

use super::{Server, post, send};
use crate::support::TestDb;

#[tokio::test]
async fn nul_characters_and_dates_before_postgres_are_422() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    let nul = "a\u{0}b";
    for user in [
        json!({"email": format!("{nul}@example.com"), "display_name": "Ann"}),
        json!({"email": "ann@example.com", "display_name": nul}),
    ] {
        let (status, body) = post(&server, "/users", user).await;
        assert_eq!(status, 422, "{body}");
    }
    let user = json!({"email": "ann@example.com", "display_name": "Ann"});
    let owner = post(&server, "/users", user).await.1["id"]
        .as_i64()
        .unwrap();
    for task in [
        json!({"owner_id": owner, "title": nul}),
        json!({"owner_id": owner, "title": "T", "description": nul}),
        json!({"owner_id": owner, "title": "T", "due_date": "-4713-11-23"}),
    ] {
        let (status, body) = post(&server, "/tasks", task).await;
        assert_eq!(status, 422, "{body}");
    }
    let first_day = json!({"owner_id": owner, "title": "T", "due_date": "-4713-11-24"});
    let (status, task) = post(&server, "/tasks", first_day).await;
    assert_eq!(status, 201, "{task}");
    let path = format!("/tasks/{}", task["id"]);
    for change in [
        json!({"title": nul}),
        json!({"description": nul}),
        json!({"due_date": "-5000-01-01"}),
        json!({"title": null}),
        json!({"status": null}),
        json!({"priority": null}),
    ] {
        let (status, body) = send(&server, Method::PATCH, &path, change.clone()).await;
        assert_eq!(status, 422, "{change}: {body}");
    }
    let (status, body) = send(&server, Method::PATCH, &path, json!({"due_date": null})).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_request_id_is_kept_only_when_plain() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    let client = reqwest::Client::new();
    let echoed = async |id: &str| {
        let response = client
            .get(server.url("/healthz"))
            .header("x-request-id", id)
            .send()
            .await
            .unwrap();
        let id = &response.headers()["x-request-id"];
        id.to_str().unwrap().to_owned()
    };
    assert_eq!(echoed("build-42.a_b:c").await, "build-42.a_b:c");
    let forged = "abc}: app::http::error: request failed error=forged";
    let long = "a".repeat(100 * 1024);
    for sent in [forged, long.as_str()] {
        let got = echoed(sent).await;
        assert_ne!(got, sent);
        assert!(app::http::request_id::is_fit(got.as_bytes()), "{got}");
    }
}

/// A body must be a JSON object: serde would fill a struct from an array of its fields, a
/// shape no client should rely on; without `content-type: application/json` it is 415.
#[tokio::test]
async fn a_body_that_is_an_array_or_not_declared_json_is_refused() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    let client = reqwest::Client::new();
    let (status, body) = post(&server, "/users", json!(["arr@example.com", "Arr"])).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("JSON object"),
        "{body}"
    );
    let (status, body) = post(&server, "/tasks", json!([1, "from an array", null])).await;
    assert_eq!(status, 422, "{body}");
    let plain = client
        .post(server.url("/users"))
        .header("content-type", "text/plain")
        .body(r#"{"email":"p@example.com","display_name":"P"}"#)
        .send()
        .await
        .unwrap();
    let (status, body) = super::answer(plain).await;
    assert_eq!(status, 415, "{body}");
    // Nothing was written: the first user made now gets the first id.
    let (status, user) = post(
        &server,
        "/users",
        json!({"email": "ok@example.com", "display_name": "Ok"}),
    )
    .await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(
        super::get(&server, "/users/1").await.1["email"],
        "ok@example.com"
    );
}
