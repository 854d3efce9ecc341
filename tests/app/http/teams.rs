//! Teams, their members and tags over HTTP: every route and status, the 409s and 422s
//! naming their constraint, hostile tag names refused at the parse, and a team's page of
//! tasks with their tags in a number of statements that does not grow with the page.

use std::time::{Duration, Instant};

use app::models::{NewTask, Task, Title};
use reqwest::Method;
use serde_json::{Value, json};

use super::{Server, get, new_user, post, refused};
use crate::support::{TestDb, count};

async fn new_team(server: &Server, name: &str) -> i64 {
    let (status, team) = post(server, "/teams", json!({"name": name})).await;
    assert_eq!(status, 201, "{team}");
    team["id"].as_i64().unwrap()
}

/// A task of `owner` in `team`, written through the model: `POST /tasks` takes no team.
async fn team_task(db: &TestDb, owner: i64, team: i64, title: &str) -> i64 {
    let conn = db.conn().await;
    let title = Title::parse(title).unwrap();
    let mut new = NewTask::new(owner, &title);
    new.team_id = Some(team);
    Task::create(&conn, &new).await.unwrap().id
}

/// `method path` without a body.
async fn bare(server: &Server, method: Method, path: &str) -> (u16, Value) {
    let client = reqwest::Client::new();
    super::answer(
        client
            .request(method, server.url(path))
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn teams_are_created_found_and_refused_with_their_constraint() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    let (status, team) = post(&server, "/teams", json!({"name": "Platform"})).await;
    assert_eq!(status, 201, "{team}");
    let mut keys: Vec<&str> = team
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["created_at", "id", "members", "name", "updated_at"]);
    assert_eq!(team["name"], "Platform");
    assert_eq!(team["members"], json!([]));
    let id = team["id"].as_i64().unwrap();
    assert_eq!(get(&server, &format!("/teams/{id}")).await, (200, team));

    let create = |body| post(&server, "/teams", body);
    refused(
        create(json!({"name": "Platform"})).await,
        409,
        Some("teams_name_key"),
    );
    for bad in ["   ".to_owned(), "x".repeat(201)] {
        refused(
            create(json!({"name": bad})).await,
            422,
            Some("teams_name_not_blank"),
        );
    }
    for shape in [
        json!({"name": "a\u{0}b"}),
        json!({}),
        json!({"name": 7}),
        json!({"name": "Ops", "owner": 1}),
    ] {
        refused(create(shape).await, 422, None);
    }
    refused(get(&server, "/teams/999999999").await, 404, None);
    refused(get(&server, "/teams/platform").await, 400, None);
}

#[tokio::test]
async fn members_are_added_listed_and_removed() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    let team = new_team(&server, "Platform").await;
    let ann = new_user(&server, "ann@example.com").await;
    let bo = new_user(&server, "bo@example.com").await;
    let members = format!("/teams/{team}/members");

    let (status, owner) = post(&server, &members, json!({"user_id": ann, "role": "owner"})).await;
    assert_eq!(status, 201, "{owner}");
    let mut keys: Vec<&str> = owner
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["joined_at", "role", "team_id", "user_id"]);
    assert_eq!(
        (owner["team_id"].as_i64(), owner["user_id"].as_i64()),
        (Some(team), Some(ann))
    );
    assert_eq!(owner["role"], "owner");
    // Without a role, the column's default.
    let (status, member) = post(&server, &members, json!({"user_id": bo})).await;
    assert_eq!(status, 201, "{member}");
    assert_eq!(member["role"], "member");

    let add = |body| post(&server, &members, body);
    refused(
        add(json!({"user_id": ann, "role": "admin"})).await,
        409,
        Some("team_members_pkey"),
    );
    refused(
        add(json!({"user_id": 999_999_999})).await,
        422,
        Some("team_members_user_id_fkey"),
    );
    let elsewhere = json!({"user_id": bo, "role": "member"});
    refused(
        post(&server, "/teams/999999999/members", elsewhere).await,
        422,
        Some("team_members_team_id_fkey"),
    );
    for role in ["boss", "Owner", "a\u{0}b"] {
        let (status, body) = add(json!({"user_id": bo, "role": role})).await;
        assert_eq!(status, 422, "{role:?}: {body}");
    }
    refused(
        add(json!({"user_id": bo, "role": "boss"})).await,
        422,
        Some("team_members_role_check"),
    );
    refused(add(json!({"user_id": "bo"})).await, 422, None);

    let (status, found) = get(&server, &format!("/teams/{team}")).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["members"], json!([owner, member]), "by join date");

    let leave = format!("/teams/{team}/members/{bo}");
    assert_eq!(
        bare(&server, Method::DELETE, &leave).await,
        (204, Value::Null)
    );
    refused(bare(&server, Method::DELETE, &leave).await, 404, None);
    let stranger = format!("/teams/999999999/members/{ann}");
    refused(bare(&server, Method::DELETE, &stranger).await, 404, None);
    let garbled = format!("/teams/{team}/members/bo");
    refused(bare(&server, Method::DELETE, &garbled).await, 400, None);
    let (_, found) = get(&server, &format!("/teams/{team}")).await;
    assert_eq!(found["members"], json!([owner]));
}

#[tokio::test]
async fn tasks_are_tagged_idempotently_and_untagged() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    let owner = new_user(&server, "ann@example.com").await;
    let body = json!({"owner_id": owner, "title": "Write docs"});
    let id = post(&server, "/tasks", body).await.1["id"]
        .as_i64()
        .unwrap();
    let tag = |name: &str| format!("/tasks/{id}/tags/{name}");

    let urgent = (200, json!({"tags": ["urgent"]}));
    assert_eq!(bare(&server, Method::PUT, &tag("urgent")).await, urgent);
    assert_eq!(
        bare(&server, Method::PUT, &tag("urgent")).await,
        urgent,
        "idempotent"
    );
    let both = (200, json!({"tags": ["docs", "urgent"]}));
    assert_eq!(
        bare(&server, Method::PUT, &tag("docs")).await,
        both,
        "by name"
    );
    let mut conn = db.conn().await;
    assert_eq!(count(&mut conn, "tags").await, 2);
    assert_eq!(count(&mut conn, "task_tags").await, 2);

    assert_eq!(
        bare(&server, Method::DELETE, &tag("docs")).await,
        (204, Value::Null)
    );
    refused(bare(&server, Method::DELETE, &tag("docs")).await, 404, None);
    refused(
        bare(&server, Method::DELETE, &tag("never-made")).await,
        404,
        None,
    );
    // The tag itself stays, for other tasks.
    assert_eq!(count(&mut conn, "tags").await, 2);

    refused(
        bare(&server, Method::PUT, "/tasks/999999999/tags/urgent").await,
        404,
        None,
    );
    refused(
        bare(&server, Method::PUT, "/tasks/seven/tags/urgent").await,
        400,
        None,
    );
    let deleted = json!({"owner_id": owner, "title": "Gone"});
    let gone = post(&server, "/tasks", deleted).await.1["id"]
        .as_i64()
        .unwrap();
    let path = format!("/tasks/{gone}");
    assert_eq!(bare(&server, Method::DELETE, &path).await.0, 204);
    refused(
        bare(&server, Method::PUT, &format!("{path}/tags/urgent")).await,
        404,
        None,
    );
}

#[tokio::test]
async fn hostile_tag_names_are_422_naming_the_format_never_500() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    let owner = new_user(&server, "ann@example.com").await;
    let body = json!({"owner_id": owner, "title": "Write docs"});
    let id = post(&server, "/tasks", body).await.1["id"]
        .as_i64()
        .unwrap();
    let long = "x".repeat(10 * 1024);
    for name in [
        "Urgent",
        "-urgent",
        "%00",
        "a%00b",
        "..%2F..%2Fetc",
        "%2E%2E%2Fetc",
        "a%2Fb",
        "a%20b",
        "%FF",
        "%C3%A9",
        "%25",
        "x'%3B%20DROP%20TABLE%20tags%3B--",
        &long,
    ] {
        let path = format!("/tasks/{id}/tags/{name}");
        for method in [Method::PUT, Method::DELETE] {
            let (status, body) = bare(&server, method.clone(), &path).await;
            assert_eq!(status, 422, "{method} {:.80}: {body}", name);
            assert_eq!(body["constraint"], "tags_name_format", "{body}");
        }
    }
    let mut conn = db.conn().await;
    assert_eq!(count(&mut conn, "tags").await, 0, "nothing stored");
}

#[tokio::test]
async fn a_teams_tasks_come_in_pages_with_their_tags() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    let owner = new_user(&server, "ann@example.com").await;
    let team = new_team(&server, "Platform").await;
    let other = new_team(&server, "Ops").await;
    let mut ids = Vec::new();
    for n in 0..7 {
        ids.push(team_task(&db, owner, team, &format!("task {n}")).await);
        team_task(&db, owner, other, &format!("theirs {n}")).await;
    }
    // Task n carries the tags t0..t(n mod 3), put on in reverse: they come back by name.
    for (n, id) in ids.iter().enumerate() {
        for t in (0..n % 3).rev() {
            let path = format!("/tasks/{id}/tags/t{t}");
            assert_eq!(bare(&server, Method::PUT, &path).await.0, 200);
        }
    }
    let deleted = ids.remove(3);
    let gone = format!("/tasks/{deleted}");
    assert_eq!(bare(&server, Method::DELETE, &gone).await.0, 204);

    let mut seen = Vec::new();
    let mut path = format!("/teams/{team}/tasks?limit=4");
    loop {
        let (status, page) = get(&server, &path).await;
        assert_eq!(status, 200, "{page}");
        for task in page["items"].as_array().unwrap() {
            assert_eq!(task["team_id"], team, "{task}");
            assert_eq!(task["owner_id"], owner, "{task}");
            let n: usize = task["title"].as_str().unwrap()[5..].parse().unwrap();
            let tags: Vec<String> = (0..n % 3).map(|t| format!("t{t}")).collect();
            assert_eq!(task["tags"], json!(tags), "{task}");
            seen.push(task["id"].as_i64().unwrap());
        }
        match page["next"].as_i64() {
            Some(next) => path = format!("/teams/{team}/tasks?limit=4&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, ids, "each live task of the team once, by id");

    let (status, first) = get(&server, &format!("/teams/{team}/tasks")).await;
    assert_eq!(status, 200);
    assert_eq!(
        first["items"].as_array().unwrap().len(),
        6,
        "the default limit holds all"
    );
    assert_eq!(first["next"], Value::Null);
    let (_, nobody) = get(&server, "/teams/999999999/tasks").await;
    assert_eq!(nobody, json!({"items": [], "next": null}));
    for limit in ["0", "101"] {
        let path = format!("/teams/{team}/tasks?limit={limit}");
        refused(get(&server, &path).await, 422, Some("page_limit_range"));
    }
    refused(
        get(&server, &format!("/teams/{team}/tasks?limit=ten")).await,
        422,
        None,
    );
    refused(get(&server, "/teams/ops/tasks").await, 400, None);
}

/// The statements the server ran for the request with this id, from its debug events
/// (`app::instrument`), each printed inside the request's span.
fn statements(server: &Server, request_id: &str) -> Vec<String> {
    let span = format!("request_id={request_id}}}");
    (server.log().into_iter())
        .filter(|line| line.contains(&span) && line.contains("app::instrument: query"))
        .collect()
}

/// `GET path` sent with this request id: its status and body.
async fn get_as(server: &Server, path: &str, request_id: &str) -> (u16, Value) {
    let client = reqwest::Client::new();
    let request = client
        .get(server.url(path))
        .header("x-request-id", request_id);
    super::answer(request.send().await.unwrap()).await
}

#[tokio::test]
async fn a_page_of_twenty_tagged_tasks_costs_the_statements_of_a_page_of_two() {
    let db = TestDb::new().await;
    // The server's own statement events: each counted for the request it ran in, so
    // nothing else on the server (another test's database, say) is counted.
    let log = [("RUST_LOG", "warn,app::http=info,app::instrument=debug")];
    let server = Server::start_with(&db.url, &[], &log);
    let owner = new_user(&server, "ann@example.com").await;
    let team = new_team(&server, "Platform").await;
    for n in 0..20 {
        let id = team_task(&db, owner, team, &format!("task {n}")).await;
        for tag in ["red", "blue"] {
            let path = format!("/tasks/{id}/tags/{tag}");
            assert_eq!(bare(&server, Method::PUT, &path).await.0, 200);
        }
    }

    let (status, two) = get_as(&server, &format!("/teams/{team}/tasks?limit=2"), "two-rows").await;
    assert_eq!(status, 200, "{two}");
    assert_eq!(two["items"].as_array().unwrap().len(), 2);
    let path = format!("/teams/{team}/tasks?limit=20");
    let (status, twenty) = get_as(&server, &path, "twenty-rows").await;
    assert_eq!(status, 200, "{twenty}");
    let items = twenty["items"].as_array().unwrap();
    assert_eq!(items.len(), 20);
    assert!(
        items.iter().all(|t| t["tags"] == json!(["blue", "red"])),
        "{twenty}"
    );

    // stderr is read on a thread of its own: once a later request's events are in, the
    // earlier ones are too.
    get_as(&server, &format!("/teams/{team}"), "marker").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while statements(&server, "marker").is_empty() {
        assert!(
            Instant::now() < deadline,
            "no statement events: {:?}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (small, large) = (
        statements(&server, "two-rows"),
        statements(&server, "twenty-rows"),
    );
    assert_eq!(
        small.len(),
        large.len(),
        "2 rows: {small:#?}\n20 rows: {large:#?}"
    );
    // The page, then the tags of all its tasks through the link table; the rest (a
    // pooled connection's check) is the same for any page.
    assert!(
        large.iter().any(|l| l.contains(r#"FROM "tasks""#)),
        "{large:#?}"
    );
    assert!(
        large.iter().any(|l| l.contains(r#"FROM ("task_tags""#)),
        "{large:#?}"
    );
    assert!(large.len() <= 3, "{large:#?}");
}
