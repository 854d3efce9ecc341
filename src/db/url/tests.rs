//! The URL's parsing, masking and host lists, checked.

use super::*;

fn refused(raw: &str) -> String {
    DatabaseUrl::parse(raw).unwrap_err().to_string()
}

#[test]
fn a_url_parses_and_shows_its_password_masked() {
    let url = DatabaseUrl::parse("postgres://app:s3cret@db.example:5433/tasks").unwrap();
    assert_eq!(url.database(), "tasks");
    assert_eq!(url.to_string(), "postgres://app:***@db.example:5433/tasks");
    assert_eq!(
        format!("{url:?}"),
        "DatabaseUrl(postgres://app:***@db.example:5433/tasks)"
    );
    assert_eq!(url.expose(), "postgres://app:s3cret@db.example:5433/tasks");
}

#[test]
fn what_is_wrong_is_named_and_the_password_never_shown() {
    for (raw, reason) in [
        ("mysql://app:s3cret@h/db", "the scheme must be postgres://"),
        ("postgres://app:s3cret@h", "no database name"),
        ("app:s3cret@h/db", "postgres://"),
        // '/' in a password ends the authority: the rest lands in the path.
        ("postgres://app:s3/cret@h/db", "percent-encode"),
        ("postgres://app:s3cret@h/db?password=x@y", "percent-encode"),
    ] {
        let err = refused(raw);
        assert!(err.contains(reason), "{raw}: {err}");
        assert!(
            !err.contains("s3cret") && !err.contains("cret@"),
            "{raw}: {err}"
        );
    }
    let long = format!("postgres://h/{}", "d".repeat(MAX_NAME_BYTES + 1));
    assert!(refused(&long).contains("at most 63"), "{}", refused(&long));
    DatabaseUrl::parse(&format!("postgres://h/{}", "d".repeat(MAX_NAME_BYTES))).unwrap();
}

#[test]
fn mask_hides_passwords_in_any_input() {
    let cases = [
        ("postgres://u:pw@h/db", "postgres://u:***@h/db"),
        (
            "postgres://u@h/db?password=pw&x=1",
            "postgres://u@h/db?password=***&x=1",
        ),
        (
            "postgres://u@h/db?PASSWORD=pw",
            "postgres://u@h/db?PASSWORD=***",
        ),
        ("host=h password='p w' dbname=db", "(not shown: not a URL)"),
        // The last '@' ends the user info: the password is "p@w".
        ("postgres://u:p@w@h/db", "postgres://u:***@h/db"),
        (
            "postgres://u:pw@h:port/db",
            "postgres://(rest not shown: it does not parse)",
        ),
        ("", "(not shown: not a URL)"),
        // A percent-encoded name is the same parameter to tokio-postgres.
        (
            "postgres://u@h/db?pass%77ord=pw&sslmode=require",
            "postgres://u@h/db?password=***&sslmode=require",
        ),
    ];
    for (raw, masked) in cases {
        assert_eq!(mask(raw), masked, "{raw}");
    }
    assert_eq!(
        mask_password_params("a password='p w' b"),
        "a password=*** b"
    );
}

#[test]
fn another_database_on_the_same_server_is_path_encoded() {
    let url = DatabaseUrl::parse("postgres://u:pw@h/app").unwrap();
    let other = url.with_database("my db/ü_x");
    assert_eq!(other.database(), "my db/ü_x");
    assert!(
        other.expose().ends_with("/my%20db%2F%C3%BC_x"),
        "{}",
        other.expose()
    );
    assert!(other.expose().starts_with("postgres://u:pw@h/"));
}

#[test]
fn a_host_list_parses_as_libpq_writes_it() {
    let raw = "postgres://app:s3cret@h1:5432,h2:5433/tasks?target_session_attrs=read-write";
    let url = DatabaseUrl::parse(raw).unwrap();
    assert!(url.is_multi_host());
    assert_eq!(url.database(), "tasks");
    assert_eq!(url.expose(), raw);
    assert_eq!(
        url.to_string(),
        "postgres://app:***@h1:5432,h2:5433/tasks?target_session_attrs=read-write"
    );
    let hosts: Vec<String> = (url.each_host().unwrap().into_iter())
        .map(|(host, one)| format!("{host} {one}"))
        .collect();
    assert_eq!(
        hosts,
        [
            "h1:5432 postgres://app:s3cret@h1:5432/tasks?target_session_attrs=read-write",
            "h2:5433 postgres://app:s3cret@h2:5433/tasks?target_session_attrs=read-write",
        ]
    );
    // Another database keeps the list; ports are optional, IPv6 goes in brackets.
    let other = url.with_database("postgres");
    assert_eq!(
        other.expose(),
        "postgres://app:s3cret@h1:5432,h2:5433/postgres?target_session_attrs=read-write"
    );
    for raw in [
        "postgres://h1,h2/db",
        "postgresql://u@[::1]:5432,[::1],127.0.0.1:6432/db?target_session_attrs=any",
        "postgres://u@h1,h2:5433/db?target_session_attrs=read-only&sslmode=disable",
    ] {
        let url = DatabaseUrl::parse(raw).unwrap();
        assert_eq!(url.expose(), raw);
        assert_eq!(url.to_string(), raw);
    }
    let v6 = DatabaseUrl::parse("postgres://[::1]:5432,[::2]/db").unwrap();
    let firsts: Vec<String> = (v6.each_host().unwrap().into_iter())
        .map(|(_, one)| one.to_string())
        .collect();
    assert_eq!(firsts, ["postgres://[::1]:5432/db", "postgres://[::2]/db"]);
    let most = vec!["h"; MAX_HOSTS].join(",");
    DatabaseUrl::parse(&format!("postgres://{most}/db")).unwrap();
}

#[test]
fn a_malformed_host_list_is_refused_with_what_is_wrong() {
    let too_many = vec!["h"; MAX_HOSTS + 1].join(",");
    for (list, reason) in [
        ("h1,,h2", "host 2 of the list is empty"),
        ("h1,h2,", "host 3 of the list is empty"),
        (",h1", "host 1 of the list is empty"),
        ("h1,:5432", "has no host name"),
        ("h1:0,h2", "from 1 to 65535"),
        ("h1,h2:65536", "from 1 to 65535"),
        ("h1:54x,h2", "from 1 to 65535"),
        ("h1:,h2", "from 1 to 65535"),
        ("h1,::1", "IPv6 address goes in brackets"),
        ("h1,[::1", "no closing ']'"),
        ("h1,[db]:5432", "not an IPv6 address"),
        ("h1,[::1]x", "only :port may follow"),
        ("h1,h 2", "host 2 of the list holds a space"),
        (
            "h1,h2\nINFO all good",
            "host 2 of the list holds a space, a control",
        ),
        ("h1,\u{202e}h2", "a direction mark"),
        (too_many.as_str(), "at most 16"),
    ] {
        let err = refused(&format!("postgres://app:s3cret@{list}/db"));
        assert!(err.contains(reason), "{list}: {err}");
        assert!(!err.contains("s3cret"), "{list}: {err}");
        // Shown escaped: one line, reading as what it is.
        assert!(!err.contains(['\n', '\u{202e}']), "{list}: {err}");
    }
    for (rest, reason) in [
        ("h1,h2/db?port=5432", "port= may not be given too"),
        ("h1,h2/db?host=h3", "host= may not be given too"),
        ("h1,h2/db?load_balance_hosts=random", "tried in its order"),
        (
            "h1,h2/db?target_session_attrs=prefer-standby",
            "not supported by the driver",
        ),
        (
            "h1/db?target_session_attrs=standby",
            "not supported by the driver",
        ),
        (
            "h1/db?target_session_attrs=rw",
            "not one of any, read-write, read-only",
        ),
        ("h1,h2", "no database name"),
        ("h1,h2/", "no database name"),
    ] {
        let err = refused(&format!("postgres://app:s3cret@{rest}"));
        assert!(err.contains(reason), "{rest}: {err}");
        assert!(!err.contains("s3cret"), "{rest}: {err}");
    }
    // The checks of one host hold for a list: scheme, a misplaced '@'.
    for (raw, reason) in [
        (
            "mysql://app:s3cret@h1,h2/db",
            "the scheme must be postgres://",
        ),
        ("postgres://app:s3/cret@h1,h2/db", "percent-encode"),
        ("postgres://app:s3,c/ret@h1,h2/db", "percent-encode"),
    ] {
        let err = refused(raw);
        assert!(err.contains(reason), "{raw}: {err}");
        for fragment in ["s3", "cret", "ret@"] {
            assert!(!err.contains(fragment), "{raw}: {err}");
        }
    }
}

#[test]
fn no_fragment_of_a_password_shows_with_a_host_list() {
    // "p,w@x:y" percent-encoded, and written raw (the last '@' ends the user info).
    for (raw, shown) in [
        (
            "postgres://app:p%2Cw%40x%3Ay@h1:5432,h2/db?password=q%2Cr",
            "postgres://app:***@h1:5432,h2/db?password=***",
        ),
        (
            "postgres://app:p,w@x:y@h1:5432,h2/db",
            "postgres://app:***@h1:5432,h2/db",
        ),
    ] {
        let url = DatabaseUrl::parse(raw).unwrap();
        let bad = format!("{raw}&target_session_attrs=no").replacen("/db&", "/db?", 1);
        let texts = [
            url.to_string(),
            format!("{url:?}"),
            mask(raw),
            refused(&bad),
            refused(&raw.replacen(",h2", ",,h2", 1)),
        ];
        assert_eq!(texts[0], shown);
        for text in texts {
            for fragment in [
                "p%2C", "%2Cw", "w%40", "%40x", "x%3A", "%3Ay", "p,w", "w@x", "x:y", "q%2C",
                "%2Cr", "q,r",
            ] {
                assert!(!text.contains(fragment), "{fragment} in {text}");
            }
        }
    }
    // A tool (pg_dump) gets every host and the password in its environment only.
    let url = DatabaseUrl::parse("postgres://app:p%2Cw@h1,h2:5433/db").unwrap();
    let (bare, env) = tool_connection(&url).unwrap();
    assert_eq!(bare, "postgres://app@h1,h2:5433/db");
    assert!(env.contains(&("PGPASSWORD", "p,w".to_owned())), "{env:?}");
}
