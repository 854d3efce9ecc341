//! The newtypes' checks, without a database: each refuses what its CHECK constraint
//! refuses, and names that constraint.

use super::{Email, Priority, Role, TagName, Title};
use crate::Error;

fn constraint(err: Error) -> String {
    match err {
        Error::Invalid { constraint, .. } => constraint,
        other => panic!("not a validation error: {other}"),
    }
}

#[test]
fn titles_are_trimmed_and_counted_in_characters() {
    assert_eq!(
        Title::parse("  write docs ").unwrap().as_str(),
        "write docs"
    );
    assert!(
        Title::parse(&"é".repeat(200)).is_ok(),
        "200 characters, 400 bytes"
    );
    for bad in ["", "   ", &"x".repeat(201)] {
        assert_eq!(
            constraint(Title::parse(bad).unwrap_err()),
            "tasks_title_length"
        );
    }
}

#[test]
fn priorities_are_one_to_five() {
    assert_eq!(Priority::new(1).unwrap().get(), 1);
    assert_eq!(Priority::new(5).unwrap().get(), 5);
    for bad in [0, 6, -1, i64::from(i16::MAX) + 1, i64::MIN] {
        assert_eq!(
            constraint(Priority::new(bad).unwrap_err()),
            "tasks_priority_range"
        );
    }
}

#[test]
fn emails_are_trimmed_and_checked_as_the_check_constraint_does() {
    assert_eq!(Email::parse("  a@b.io ").unwrap().as_str(), "a@b.io");
    let longest = format!("{}@b.io", "a".repeat(254 - 5));
    assert!(Email::parse(&longest).is_ok());
    for bad in [
        "",
        "a",
        "a@b",
        "@b.io",
        "a@.io",
        "a@b.",
        "a@@b.io",
        "a b@c.io",
        "\u{202e}oi.b@a",
        "a\u{7}@b.io",
        &(longest + "x"),
    ] {
        let err = Email::parse(bad).unwrap_err();
        assert!(
            matches!(&err, Error::Invalid { constraint, .. } if constraint == "users_email_format"),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn tag_names_are_what_tags_name_format_allows() {
    for good in ["a", "urgent", "q3-2025", "9", &"x".repeat(50)] {
        assert_eq!(TagName::parse(good).unwrap().as_str(), good);
    }
    for bad in [
        "",
        "-a",
        "Urgent",
        "a b",
        "a_b",
        "../etc",
        "a/b",
        "a\0b",
        "é",
        &"x".repeat(51),
        &"x".repeat(10_000),
    ] {
        let err = TagName::parse(bad).unwrap_err();
        assert!(
            matches!(&err, Error::Invalid { constraint, .. } if constraint == "tags_name_format"),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn roles_are_the_three_team_members_role_check_allows() {
    for role in [Role::Owner, Role::Admin, Role::Member] {
        assert_eq!(Role::parse(role.as_str()).unwrap(), role);
    }
    for bad in ["", "Owner", "guest", "member "] {
        assert_eq!(
            constraint(Role::parse(bad).unwrap_err()),
            "team_members_role_check"
        );
    }
}
