//! Writing a backup: pg_dump into a hidden file of the owner's only (0600) that takes the
//! backup's name only once complete, and never over a file that is there.

use std::future::Future;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tokio::process::Command;

use super::failed;
use super::process::run;
use crate::db::{self, DatabaseUrl};
use crate::migrations::tool;
use crate::{Error, Result};

/// `pg_dump --format=custom` of the database at `url` into `file`, a new file readable by
/// its owner only (0600). An existing `file` is refused, never overwritten; the dump goes
/// to a hidden file beside it that takes its name only once complete, so a failed or
/// interrupted dump never leaves a partial backup under `file`. Hidden files of earlier
/// dumps to the same `file` whose process is gone (killed) are removed first.
///
/// When `cancel` completes first (Ctrl-C, SIGTERM), pg_dump is stopped, the hidden file
/// removed, and an error returned.
pub async fn dump(url: &DatabaseUrl, file: &Path, cancel: impl Future<Output = ()>) -> Result<()> {
    if file.symlink_metadata().is_ok() {
        return Err(exists_already(file));
    }
    remove_stale_partials(file);
    let partial = partial_path(file);
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .map_err(|e| failed(format!("cannot write {}: {e}", file.display())))?;
    let result = async {
        let (bare, env) = db::tool_connection(url)?;
        let mut pg_dump = Command::new(tool("pg_dump"));
        pg_dump
            .envs(env)
            .args(["--format=custom", "--dbname", &bare])
            .stdout(out.try_clone().map_err(|e| failed(e.to_string()))?);
        run(pg_dump, "pg_dump", "", std::pin::pin!(cancel)).await?;
        out.sync_all()
            .map_err(|e| failed(format!("cannot write {}: {e}", partial.display())))?;
        publish(&partial, file)
    }
    .await;
    let _ = std::fs::remove_file(&partial);
    result
}

/// Removes `.<name>.partial-<pid>` files beside `file` whose process no longer exists: left
/// by a dump whose `migrate` was killed. A live pid (a dump in progress) is left alone.
fn remove_stale_partials(file: &Path) {
    let dir = match file.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir.to_path_buf(),
        None => PathBuf::from("."),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| partial_pid(file, name))
        else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } == -1
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone && std::fs::remove_file(entry.path()).is_ok() {
            tracing::warn!(file = %entry.path().display(), "removed the partial file of a killed backup");
        }
    }
}

/// `.<name>.partial-`: how the hidden files of dumps to `file` begin.
fn partial_prefix(file: &Path) -> String {
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    format!(".{name}.partial-")
}

/// The pid in `entry` when it names a hidden file of a dump to `file`.
fn partial_pid(file: &Path, entry: &str) -> Option<libc::pid_t> {
    entry
        .strip_prefix(&partial_prefix(file))
        .and_then(|pid| pid.parse::<libc::pid_t>().ok())
        .filter(|pid| *pid > 0)
}

/// `.<name>.partial-<pid>` beside `file`.
fn partial_path(file: &Path) -> PathBuf {
    file.with_file_name(format!("{}{}", partial_prefix(file), std::process::id()))
}

/// Gives the complete dump its name. A hard link fails if the name is taken, so a file
/// that appeared during the dump is not clobbered either; where links are not supported,
/// a rename after one more look.
fn publish(partial: &Path, file: &Path) -> Result<()> {
    match std::fs::hard_link(partial, file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(exists_already(file));
        }
        Err(_) if file.symlink_metadata().is_err() => std::fs::rename(partial, file)
            .map_err(|e| failed(format!("cannot write {}: {e}", file.display())))?,
        Err(_) => return Err(exists_already(file)),
    }
    // The new name must survive a crash too.
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

fn exists_already(file: &Path) -> Error {
    failed(format!(
        "{} exists already: a backup never overwrites a file; choose another name or move \
         that one away",
        file.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_file_is_hidden_beside_the_backup_and_names_its_process() {
        let file = Path::new("backups/before.dump");
        let partial = partial_path(file);
        let pid = std::process::id();
        assert_eq!(
            partial,
            Path::new(&format!("backups/.before.dump.partial-{pid}"))
        );
        let name = partial.file_name().unwrap().to_str().unwrap();
        assert_eq!(partial_pid(file, name), Some(pid as libc::pid_t));
        assert_eq!(
            partial_path(Path::new("x.dump")),
            Path::new(&format!(".x.dump.partial-{pid}"))
        );
    }

    #[test]
    fn only_a_partial_of_the_same_backup_with_a_pid_is_recognised() {
        let file = Path::new("before.dump");
        assert_eq!(partial_pid(file, ".before.dump.partial-42"), Some(42));
        assert_eq!(partial_pid(file, ".before.dump.partial-0"), None);
        assert_eq!(partial_pid(file, ".before.dump.partial--42"), None);
        assert_eq!(partial_pid(file, ".before.dump.partial-4x"), None);
        assert_eq!(partial_pid(file, ".before.dump.partial-"), None);
        assert_eq!(partial_pid(file, ".other.dump.partial-42"), None);
        assert_eq!(partial_pid(file, "before.dump"), None);
    }

    #[test]
    fn publishing_never_clobbers_a_file() {
        let dir = std::env::temp_dir().join(format!("backup-publish-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (partial, file) = (dir.join(".b.dump.partial-1"), dir.join("b.dump"));
        std::fs::write(&partial, "dump").unwrap();
        publish(&partial, &file).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "dump");
        // As dump does: the partial name goes, the published one stays.
        std::fs::remove_file(&partial).unwrap();

        std::fs::write(&partial, "newer").unwrap();
        let err = publish(&partial, &file).unwrap_err().to_string();
        assert!(err.contains("exists already"), "{err}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "dump");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
