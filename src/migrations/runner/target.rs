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
    /// Up to and including this migration (up), or down to and keeping it (down).
    Version(Version),
}

impl Target {
    /// Parses `head`, `base`, `+N` (upgrade), `-N` (downgrade) or a [`Version`].
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
            _ => Version::parse(text).map(Target::Version).ok_or_else(|| {
                Error::Migration(format!(
                    "{text:?} is not a target: use head, base, {sign}N, a version or its folder name"
                ))
            }),
        }
    }
}

/// A migration as the operator names it: by version (`2025-02-01-000005`, dashes optional),
/// or by folder name as `current` and `history` print it (`2025-02-01-000005_users_drop_name`,
/// also `migrations/<folder>/` as tab completion writes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Diesel's version: the digits, dashes removed.
    pub version: String,
    /// The folder name's part after the version, when a folder name was given.
    pub name: Option<String>,
}

impl Version {
    /// Reads a version or a folder name; `None` when `text` is neither.
    pub fn parse(text: &str) -> Option<Version> {
        let folder = text.trim().trim_end_matches('/').rsplit('/').next()?;
        let (version, name) = match folder.split_once('_') {
            Some((version, name)) => (version, Some(name.to_owned())),
            None => (folder, None),
        };
        let digits = version.starts_with(|c: char| c.is_ascii_digit())
            && version.chars().all(|c| c.is_ascii_digit() || c == '-');
        digits.then(|| Version {
            version: version.replace('-', ""),
            name,
        })
    }

    /// The migration of this version; an unknown version is refused, naming its neighbours.
    pub fn find_in<'a>(&self, all: &'a [Migration]) -> Result<&'a Migration> {
        let Some(m) = find(all, &self.version) else {
            let v = &self.version;
            let before = all.iter().rev().find(|m| &m.version < v);
            let after = all.iter().find(|m| &m.version > v);
            let nearest: Vec<&str> = [before, after]
                .into_iter()
                .flatten()
                .map(|m| m.folder.as_str())
                .collect();
            let nearest = match nearest.is_empty() {
                true => String::new(),
                false => format!(" (nearest: {})", nearest.join(", ")),
            };
            return Err(Error::Migration(format!(
                "no migration has version {v}{nearest}"
            )));
        };
        self.check_name(&m.folder)?;
        Ok(m)
    }

    /// Refuses a folder name whose name part is not `folder`'s: a typo, or another branch's
    /// migration that took the same version.
    pub fn check_name(&self, folder: &str) -> Result<()> {
        let real = folder.split_once('_').map_or("", |(_, name)| name);
        match &self.name {
            Some(name) if name != real => Err(Error::Migration(format!(
                "no migration is named {name:?}: version {} is the folder {folder}",
                self.version
            ))),
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.version)
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
        Target::Version(v) => {
            let upto = &v.find_in(all)?.version;
            Ok(&pending[..pending.partition_point(|m| &m.version <= upto)])
        }
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
    if let Target::Version(v) = target {
        // A folder name is checked against the files, else against what the history recorded.
        let known = find(all, &v.version)
            .map(|m| m.folder.as_str())
            .or_else(|| {
                let a = applied.iter().find(|a| a.version == v.version)?;
                a.folder.as_deref()
            });
        if let Some(folder) = known {
            v.check_name(folder)?;
        }
    }
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
        Target::Version(v) if v.version.as_str() >= current || applied.is_empty() => {
            return refuse(format!("{v} is not below the current version {current}"));
        }
        Target::Version(v) if !applied.iter().any(|a| a.version == v.version) => {
            return refuse(format!("version {v} is not applied"));
        }
        Target::Version(v) => chosen.retain(|a| a.version > v.version),
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

    fn version(text: &str) -> Target {
        Target::Version(Version::parse(text).unwrap())
    }

    /// Migrations in folders `<version>_m<version>`.
    fn migrations(versions: &[&str]) -> Vec<Migration> {
        (versions.iter())
            .map(|v| Migration {
                folder: format!("{v}_m{v}"),
                ..Migration::unknown(v)
            })
            .collect()
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
        let want = Target::Version(Version {
            version: "20240101120000".into(),
            name: None,
        });
        assert_eq!(up("2024-01-01-120000").unwrap(), want);
        assert_eq!(down("20240101120000").unwrap(), want);
    }

    #[test]
    fn folder_names_and_their_paths_are_versions_with_a_name() {
        let want = Target::Version(Version {
            version: "20240101120000".into(),
            name: Some("create_users".into()),
        });
        for text in [
            "2024-01-01-120000_create_users",
            "2024-01-01-120000_create_users/",
            "migrations/2024-01-01-120000_create_users/",
            "20240101120000_create_users",
        ] {
            assert_eq!(up(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn other_words_are_not_targets() {
        for text in ["latest", "", "+", "-", "1.5", "_users", "users_1"] {
            let why = refusal(up(text));
            assert!(
                why.ends_with("is not a target: use head, base, +N, a version or its folder name"),
                "{text:?}: {why}"
            );
        }
        let why = refusal(down("previous"));
        assert!(why.contains("use head, base, -N, a version"), "{why}");
    }

    #[test]
    fn a_folder_name_must_name_the_folder_of_its_version() {
        let all = migrations(&["1", "2"]);
        let found = Version::parse("2_m2").unwrap().find_in(&all).unwrap();
        assert_eq!(found.folder, "2_m2");
        let why = refusal(Version::parse("2_m1").unwrap().find_in(&all));
        assert!(
            why.ends_with("no migration is named \"m1\": version 2 is the folder 2_m2"),
            "{why}"
        );
        let why = refusal(Version::parse("5").unwrap().find_in(&all));
        assert!(
            why.ends_with("no migration has version 5 (nearest: 2_m2)"),
            "{why}"
        );
    }

    #[test]
    fn upgrades_select_pending_migrations_up_to_the_target() {
        let all = migrations(&["1", "2", "3"]);
        let pending = &all[1..];
        let pick = |t: Target| select_up(&all, pending, &t).map(versions);
        assert_eq!(pick(Target::Head).unwrap(), ["2", "3"]);
        assert_eq!(pick(Target::Steps(1)).unwrap(), ["2"]);
        assert_eq!(pick(Target::Steps(9)).unwrap(), ["2", "3"]);
        assert_eq!(pick(version("2")).unwrap(), ["2"]);
        assert_eq!(pick(version("2_m2")).unwrap(), ["2"]);
        assert!(pick(version("1")).unwrap().is_empty());
        let why = refusal(pick(version("7")));
        assert!(
            why.ends_with("no migration has version 7 (nearest: 3_m3)"),
            "{why}"
        );
        let why = refusal(pick(version("2_m3")));
        assert!(why.contains("version 2 is the folder 2_m2"), "{why}");
        assert!(refusal(pick(Target::Base)).contains("use downgrade base"));
    }

    #[test]
    fn downgrades_revert_newest_first_and_never_more_than_named() {
        let all = migrations(&["1", "2", "3"]);
        let done = applied(&["1", "2", "3"]);
        let pick = |t: Target| select_down(&all, &done, &t).map(|c| versions(&c).join(" "));
        assert_eq!(pick(Target::Base).unwrap(), "3 2 1");
        assert_eq!(pick(Target::Steps(2)).unwrap(), "3 2");
        assert_eq!(pick(version("1")).unwrap(), "3 2");
        assert_eq!(pick(version("1_m1")).unwrap(), "3 2");
        assert!(refusal(pick(version("1_m2"))).contains("version 1 is the folder 1_m1"));
        assert!(refusal(pick(Target::Head)).contains("the current version is 3"));
        assert!(refusal(pick(Target::Steps(4))).contains("-4 asks for more than is applied (3)"));
        let why = refusal(pick(version("3")));
        assert!(
            why.ends_with("3 is not below the current version 3"),
            "{why}"
        );
        let gapped = applied(&["1", "3"]);
        let why = refusal(select_down(&all, &gapped, &version("2")));
        assert!(why.ends_with("version 2 is not applied"), "{why}");
    }

    #[test]
    fn a_downgrade_checks_a_folder_name_against_the_history_when_the_files_are_gone() {
        let mut done = applied(&["1", "2"]);
        done[0].folder = Some("1_old".into());
        let all = migrations(&["2"]);
        let why = refusal(select_down(&all, &done, &version("1_new")));
        assert!(why.contains("version 1 is the folder 1_old"), "{why}");
        assert!(select_down(&all, &done, &version("1_old")).is_ok());
    }

    #[test]
    fn a_downgrade_refuses_what_it_has_no_folder_for() {
        let all = migrations(&["1"]);
        let why = refusal(select_down(&all, &applied(&["1", "2"]), &Target::Steps(1)));
        assert!(why.ends_with("2: applied, but its folder is gone; cannot revert it"));
        let empty = select_down(&all, &[], &version("1"));
        assert!(refusal(empty).contains("below the current version base (nothing applied)"));
    }
}
