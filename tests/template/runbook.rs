//! The documentation's shell blocks, run as written. A block fenced ```` ```sh ```` is a
//! runnable step; ```` ```sh skip: <why> ```` is shown but not run (a replica, a pooler, a
//! long run), and the reason is required. Any other shell fence (`bash`, `shell`, `console`)
//! is refused, so a runnable-looking block cannot slip past unmarked.
//!
//! Each block runs in `bash -e -o pipefail`, in the project folder, with stdin closed; the
//! first command that fails is reported by file and line. A one-line command ending in
//! `# prints: TEXT` must also print TEXT (a part of its output), so an example's output
//! and the ids it reuses cannot drift either.

use std::path::Path;
use std::process::{Command, Stdio};

/// A fenced block of a Markdown file.
#[derive(Debug, Clone)]
pub struct Block {
    /// The file, as the failure message names it (`README.md`, `docs/deploy.md`).
    pub file: String,
    /// The 1-based line of the opening fence.
    pub line: usize,
    /// The fence's info string (`sh`, `rust src/models/note.rs`).
    pub info: String,
    /// The lines between the fences, each ending with a newline.
    pub text: String,
}

/// What a block is to the runner.
#[derive(Debug, PartialEq)]
pub enum Kind {
    /// ```` ```sh ````: run it.
    Run,
    /// ```` ```sh skip: why ````: shown, not run.
    Skip(String),
    /// Any other language, or none.
    Other,
}

impl Block {
    /// What the runner makes of this block's fence; an unmarked or malformed shell fence is
    /// an error naming the block.
    pub fn kind(&self) -> Result<Kind, String> {
        let mut words = self.info.splitn(2, char::is_whitespace);
        let lang = words.next().unwrap_or("");
        let rest = words.next().unwrap_or("").trim();
        match lang {
            "sh" if rest.is_empty() => Ok(Kind::Run),
            "sh" => match rest.strip_prefix("skip:").map(str::trim) {
                Some(why) if !why.is_empty() => Ok(Kind::Skip(why.to_owned())),
                _ => Err(format!(
                    "{}:{}: `{}`: a shell block is `sh` (run) or `sh skip: <why>`",
                    self.file, self.line, self.info
                )),
            },
            "bash" | "shell" | "console" | "zsh" | "shell-session" => Err(format!(
                "{}:{}: `{lang}` block: use `sh` (run by the docs check) or `sh skip: <why>`",
                self.file, self.line
            )),
            _ => Ok(Kind::Other),
        }
    }
}

/// Every fenced block of `text`, in order; `file` names them in messages.
pub fn blocks(file: &str, text: &str) -> Vec<Block> {
    let mut found = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block {
                    file: file.to_owned(),
                    line: i + 1,
                    info: info.trim().to_owned(),
                    text: String::new(),
                })
            }
            (Some(_), Some(_)) => found.extend(open.take()),
            (Some(block), None) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "{file}: a code fence is never closed");
    found
}

/// The longest a block may run: a whole `cargo test` of a project fits many times over.
const BLOCK_TIMEOUT_SECS: u32 = 1800;

/// Runs one `sh` block in `dir` with `env` added and `unset` removed from the environment.
/// `Err` names the file and line of the command that failed, with the block's output.
pub fn run(dir: &Path, block: &Block, env: &[(&str, &str)], unset: &[&str]) -> Result<(), String> {
    let failed_line = tempfile_path(dir, block);
    // Line 1 of the script is this preamble, so the block's line k is script line k + 1.
    // A block that failed before stopping what it started in the background (a server)
    // would leave it running, holding the output pipes open: its jobs end with it.
    let script = format!(
        "trap 'echo \"$LINENO\" > \"$RUNBOOK_FAILED_LINE\"' ERR; \
         trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{}",
        block
            .text
            .lines()
            .map(checked)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let mut command = Command::new("timeout");
    command
        .args(["--kill-after=10", &BLOCK_TIMEOUT_SECS.to_string()])
        .args(["bash", "-e", "-o", "pipefail", "-c", &script, "runbook"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .env("RUNBOOK_FAILED_LINE", &failed_line)
        .envs(env.iter().copied());
    for name in unset {
        command.env_remove(name);
    }
    let out = command.output().expect("run bash");
    let failed = std::fs::read_to_string(&failed_line).ok();
    let _ = std::fs::remove_file(&failed_line);
    if out.status.success() {
        return Ok(());
    }
    let line = failed
        .and_then(|l| l.trim().parse::<usize>().ok())
        .map(|script_line| block.line + script_line - 1);
    let (at, command) = match line {
        Some(line) => {
            let text = block.text.lines().nth(line - block.line - 1).unwrap_or("");
            (line, text.trim().to_owned())
        }
        None => (block.line, "the block".to_owned()),
    };
    let how = match out.status.code() {
        Some(124) => format!("did not finish within {BLOCK_TIMEOUT_SECS} s"),
        Some(code) => format!("exited with {code}"),
        None => "was killed by a signal".to_owned(),
    };
    Err(format!(
        "{}:{at}: `{command}` {how}\n--- stdout\n{}\n--- stderr\n{}",
        block.file,
        tail(&out.stdout),
        tail(&out.stderr)
    ))
}

/// `line` as bash runs it: `cmd  # prints: TEXT` becomes, on one line still, `cmd` with its
/// output shown and checked for TEXT.
fn checked(line: &str) -> String {
    const MARK: &str = "# prints: ";
    let Some(at) = line.rfind(MARK) else {
        return line.to_owned();
    };
    let (command, want) = (line[..at].trim_end(), line[at + MARK.len()..].trim_end());
    let quoted = format!("'{}'", want.replace('\'', r"'\''"));
    format!(
        "__out=$({command}); printf '%s\\n' \"$__out\"; case \"$__out\" in *{quoted}*) ;; \
         *) echo \"runbook: expected the output to hold: \"{quoted} >&2; false ;; esac"
    )
}

/// Where the failing line is written: beside the project, one file per run (tests run
/// blocks of the same name and line at once).
fn tempfile_path(dir: &Path, block: &Block) -> std::path::PathBuf {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!(
        ".runbook-{}-{run}-{}-{}",
        std::process::id(),
        block.file.replace('/', "_"),
        block.line
    );
    dir.parent().unwrap_or(dir).join(name)
}

/// The last 60 lines of some output, after every line that tells why a test failed (a
/// panic's message and the lines under it), which a backtrace would push out of the tail.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    let mut shown: Vec<&str> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.contains("panicked at") {
            shown.extend(lines.iter().skip(i).take(8));
            shown.push("...");
        }
    }
    shown.extend(&lines[lines.len().saturating_sub(60)..]);
    shown.join("\n")
}

/// The Markdown files a project's docs check reads, in the order a reader meets them: the
/// README, then `docs/*.md` by name.
pub fn documents(project: &Path) -> Vec<String> {
    let mut docs: Vec<String> = std::fs::read_dir(project.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    docs.sort();
    docs.insert(0, "README.md".to_owned());
    docs
}

#[test]
fn fences_are_read_with_their_lines_and_marks() {
    let doc = "# T\n\n```sh\necho a\n```\n\ntext\n```sh skip: needs a replica\nx\n```\n```rust src/a.rs\nfn a() {}\n```\n";
    let found = blocks("doc.md", doc);
    let kinds: Vec<_> = found.iter().map(|b| (b.line, b.kind().unwrap())).collect();
    assert_eq!(
        kinds,
        [
            (3, Kind::Run),
            (8, Kind::Skip("needs a replica".into())),
            (11, Kind::Other)
        ]
    );
    assert_eq!(found[0].text, "echo a\n");
    for bad in [
        "```bash\nls\n```\n",
        "```sh skip:\nls\n```\n",
        "```sh maybe\nls\n```\n",
    ] {
        let block = &blocks("bad.md", bad)[0];
        let err = block.kind().unwrap_err();
        assert!(err.starts_with("bad.md:1: "), "{err}");
    }
}

/// The runner stops at the first failing command and names its file and line; the
/// commands after it do not run.
#[test]
fn a_failing_command_is_named_by_file_and_line() {
    let dir = crate::support::TempDir::new("runbook");
    let doc = "intro\n\n```sh\ntrue\necho ok > first\nfalse --flag   # broken on purpose\necho never > second\n```\n";
    let block = &blocks("docs/broken.md", doc)[0];
    let err = run(&dir.0, block, &[], &[]).unwrap_err();
    assert!(
        err.starts_with("docs/broken.md:6: `false --flag   # broken on purpose` exited with 1"),
        "{err}"
    );
    assert!(dir.0.join("first").exists());
    assert!(!dir.0.join("second").exists(), "ran on after the failure");
    // A pipeline fails on any of its commands, and the environment is as asked.
    let doc = "```sh\necho \"$KEPT-${GONE:-unset}\" > env\nfalse | cat\n```\n";
    let block = &blocks("README.md", doc)[0];
    let env = [("KEPT", "yes"), ("GONE", "set")];
    let err = run(&dir.0, block, &env, &["GONE"]).unwrap_err();
    assert!(err.starts_with("README.md:3: `false | cat`"), "{err}");
    let written = std::fs::read_to_string(dir.0.join("env")).unwrap();
    assert_eq!(written, "yes-unset\n");
}

/// `# prints:` checks the command's output: a match passes and shows it, a mismatch fails
/// on that line, saying what was expected.
#[test]
fn a_command_must_print_what_its_comment_says() {
    let dir = crate::support::TempDir::new("runbook-prints");
    let doc = "```sh\necho 'task 8: it'\\''s done'   # prints: task 8: it's\n```\n";
    run(&dir.0, &blocks("README.md", doc)[0], &[], &[]).unwrap();
    let doc = "```sh\ntrue\necho 'task 9: Write docs'   # prints: task 8: Write docs\n```\n";
    let err = run(&dir.0, &blocks("README.md", doc)[0], &[], &[]).unwrap_err();
    assert!(err.starts_with("README.md:3: `echo 'task 9"), "{err}");
    assert!(
        err.contains("runbook: expected the output to hold: task 8: Write docs"),
        "{err}"
    );
}

/// A block that fails while a job it started in the background runs (a server) ends that
/// job too: the runner returns at once, and nothing is left running.
#[test]
fn a_failing_block_stops_what_it_started_in_the_background() {
    let dir = crate::support::TempDir::new("runbook-jobs");
    let doc = "```sh\nsleep 300 &\necho $! > pid\nfalse\n```\n";
    let started = std::time::Instant::now();
    let err = run(&dir.0, &blocks("README.md", doc)[0], &[], &[]).unwrap_err();
    assert!(err.starts_with("README.md:4: `false`"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "waited for the job"
    );
    // Killed, it may stay a zombie a moment, until whoever inherited it reaps it.
    let pid = std::fs::read_to_string(dir.0.join("pid")).unwrap();
    let gone = (0..100).any(|_| {
        let state = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
        std::thread::sleep(std::time::Duration::from_millis(50));
        state.map_or(true, |s| s.contains(") Z "))
    });
    assert!(gone, "the background job {pid} still runs");
}
