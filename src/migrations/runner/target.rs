//! Where a run goes: [`Target`] as the operator writes it, and which migrations it selects.
//! Pure logic over lists, so it is tested without a database.

use super::status::Applied;
use crate::migrations::Migration;
use crate::{Error, Result};

/// How far to upgrade or downgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every pending migration.
    Head,
    /// Nothing applied (downgrade only).
    Base,
    /// This many steps (`+N` up, `-N` down).
    Steps(usize),
    /// Up to and including this version (up), or down to and keeping it (down).
    Version(String),
}

impl Target {
    /// Parses `head`, `base`, `+N` (upgrade), `-N` (downgrade) or a version (dashes allowed).
    pub fn parse(text: &str, way: Direction) -> Result<Target> {
        let text = text.trim();
        let sign = if way == Direction::Up { '+' } else { '-' };
        let steps = text
            .strip_prefix(sign)
            .and_then(|n| n.parse::<usize>().ok());
        match (text, steps) {
            ("head", _) => Ok(Target::Head),
            ("base", _) => Ok(Target::Base),
            (_, Some(n)) => Ok(Target::Steps(n)),
            _ if text.starts_with(['+', '-']) && text[1..].parse::<usize>().is_ok() => Err(
                Error::Migration(format!("{text:?}: steps go {sign}N in this direction")),
            ),
            _ if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit() || c == '-') => {
                Ok(Target::Version(text.replace('-', "")))
            }
            _ => Err(Error::Migration(format!(
                "{text:?} is not a target: use head, base, {sign}N or a version"
            ))),
        }
    }
}

/// Which way a migration runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// up.sql.
    Up,
    /// down.sql.
    Down,
}

/// The pending migrations `target` selects, oldest first; `all` says which versions exist.
pub(super) fn select_up<'a>(
    all: &[Migration],
    pending: &'a [Migration],
    target: &Target,
) -> Result<&'a [Migration]> {
    match target {
        Target::Head => Ok(pending),
        Target::Steps(n) => Ok(&pending[..pending.len().min(*n)]),
        Target::Version(v) if find(all, v).is_none() => {
            Err(Error::Migration(format!("no migration has version {v}")))
        }
        Target::Version(v) => Ok(&pending[..pending.partition_point(|m| &m.version <= v)]),
        Target::Base => Err(Error::Migration(
            "upgrade to base makes no sense: use downgrade base".into(),
        )),
    }
}

/// The applied migrations `target` selects for reverting, newest first, as found in `all`.
/// Never more than asked: reverting everything takes the explicit `base`.
pub(super) fn select_down(
    all: &[Migration],
    applied: &[Applied],
    target: &Target,
) -> Result<Vec<Migration>> {
    let refuse = |why: String| Err(Error::Migration(why));
    let current = applied
        .last()
        .map_or("base (nothing applied)", |a| &a.version);
    let mut chosen: Vec<&Applied> = applied.iter().rev().collect();
    match target {
        Target::Base => {}
        Target::Head => {
            return refuse(format!(
                "downgrade head would revert nothing it names: the current version is \
                 {current}; use -N, a version below it, or base to revert everything"
            ));
        }
        Target::Steps(n) if *n > applied.len() => {
            return refuse(format!(
                "-{n} asks for more than is applied ({}); use base to revert everything",
                applied.len()
            ));
        }
        Target::Steps(n) => chosen.truncate(*n),
        Target::Version(v) if v.as_str() >= current || applied.is_empty() => {
            return refuse(format!("{v} is not below the current version {current}"));
        }
        Target::Version(v) if !applied.iter().any(|a| &a.version == v) => {
            return refuse(format!("version {v} is not applied"));
        }
        Target::Version(v) => chosen.retain(|a| &a.version > v),
    }
    (chosen.into_iter())
        .map(|a| {
            find(all, &a.version).cloned().ok_or_else(|| {
                let v = &a.version;
                Error::Migration(format!(
                    "{v}: applied, but its folder is gone; cannot revert it"
                ))
            })
        })
        .collect()
}

/// The migration of this version, if there is one.
pub(super) fn find<'a>(all: &'a [Migration], version: &str) -> Option<&'a Migration> {
    all.iter().find(|m| m.version == version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrations::runner::status::State;

    fn up(text: &str) -> Result<Target> {
        Target::parse(text, Direction::Up)
    }

    fn down(text: &str) -> Result<Target> {
        Target::parse(text, Direction::Down)
    }

    fn refusal(result: Result<impl std::fmt::Debug>) -> String {
        result.unwrap_err().to_string()
    }

    fn migrations(versions: &[&str]) -> Vec<Migration> {
        versions.iter().map(|v| Migration::unknown(v)).collect()
    }

    fn applied(versions: &[&str]) -> Vec<Applied> {
        let run_on = chrono::NaiveDateTime::default();
        (versions.iter())
            .map(|v| Applied {
                version: (*v).to_owned(),
                folder: None,
                run_on,
                duration_ms: None,
                state: State::Ok,
            })
            .collect()
    }

    fn versions(chosen: &[Migration]) -> Vec<&str> {
        chosen.iter().map(|m| m.version.as_str()).collect()
    }

    #[test]
    fn head_and_base_are_words_in_either_direction() {
        assert_eq!(up("head").unwrap(), Target::Head);
        assert_eq!(down(" base ").unwrap(), Target::Base);
        assert_eq!(down("head").unwrap(), Target::Head);
    }

    #[test]
    fn steps_take_the_sign_of_their_direction() {
        assert_eq!(up("+2").unwrap(), Target::Steps(2));
        assert_eq!(down("-1").unwrap(), Target::Steps(1));
        let wrong = refusal(up("-1"));
        assert!(
            wrong.ends_with("\"-1\": steps go +N in this direction"),
            "{wrong}"
        );
        let wrong = refusal(down("+3"));
        assert!(
            wrong.ends_with("\"+3\": steps go -N in this direction"),
            "{wrong}"
        );
    }

    #[test]
    fn versions_may_be_written_with_dashes() {
        let want = Target::Version("20240101120000".into());
        assert_eq!(up("2024-01-01-120000").unwrap(), want);
        assert_eq!(down("20240101120000").unwrap(), want);
    }

    #[test]
    fn folder_names_and_other_words_are_not_targets() {
        for text in ["2024-01-01-120000_create_users", "latest", "", "+", "1.5"] {
            let why = refusal(up(text));
            assert!(
                why.ends_with("is not a target: use head, base, +N or a version"),
                "{text:?}: {why}"
            );
        }
        let why = refusal(down("previous"));
        assert!(why.contains("use head, base, -N or a version"), "{why}");
    }

    #[test]
    fn upgrades_select_pending_migrations_up_to_the_target() {
        let all = migrations(&["1", "2", "3"]);
        let pending = &all[1..];
        let pick = |t: Target| select_up(&all, pending, &t).map(versions);
        assert_eq!(pick(Target::Head).unwrap(), ["2", "3"]);
        assert_eq!(pick(Target::Steps(1)).unwrap(), ["2"]);
        assert_eq!(pick(Target::Steps(9)).unwrap(), ["2", "3"]);
        assert_eq!(pick(Target::Version("2".into())).unwrap(), ["2"]);
        assert!(pick(Target::Version("1".into())).unwrap().is_empty());
        let why = refusal(pick(Target::Version("7".into())));
        assert!(why.ends_with("no migration has version 7"), "{why}");
        assert!(refusal(pick(Target::Base)).contains("use downgrade base"));
    }

    #[test]
    fn downgrades_revert_newest_first_and_never_more_than_named() {
        let all = migrations(&["1", "2", "3"]);
        let done = applied(&["1", "2", "3"]);
        let pick = |t: Target| select_down(&all, &done, &t).map(|c| versions(&c).join(" "));
        assert_eq!(pick(Target::Base).unwrap(), "3 2 1");
        assert_eq!(pick(Target::Steps(2)).unwrap(), "3 2");
        assert_eq!(pick(Target::Version("1".into())).unwrap(), "3 2");
        assert!(refusal(pick(Target::Head)).contains("the current version is 3"));
        assert!(refusal(pick(Target::Steps(4))).contains("-4 asks for more than is applied (3)"));
        let why = refusal(pick(Target::Version("3".into())));
        assert!(
            why.ends_with("3 is not below the current version 3"),
            "{why}"
        );
        let gapped = applied(&["1", "3"]);
        let why = refusal(select_down(&all, &gapped, &Target::Version("2".into())));
        assert!(why.ends_with("version 2 is not applied"), "{why}");
    }

    #[test]
    fn a_downgrade_refuses_what_it_has_no_folder_for() {
        let all = migrations(&["1"]);
        let why = refusal(select_down(&all, &applied(&["1", "2"]), &Target::Steps(1)));
        assert!(why.ends_with("2: applied, but its folder is gone; cannot revert it"));
        let empty = select_down(&all, &[], &Target::Version("1".into()));
        assert!(refusal(empty).contains("below the current version base (nothing applied)"));
    }
}
