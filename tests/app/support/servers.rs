//! Servers of a test's own: private clusters started with `scripts/pg.sh`, streaming
//! replicas and pgbouncers in front of them, and whether their programs are installed.

use super::database::unique_name;

/// Runs `scripts/pg.sh` (without DATABASE_URL: it manages private clusters) with extra
/// environment variables.
pub fn pg_sh(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg.sh"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("DATABASE_URL")
        .output()
        .expect("run scripts/pg.sh")
}

/// True if PostgreSQL's server binaries (initdb, pg_ctl) are installed. Otherwise the test
/// says it is skipped, or fails when REQUIRE_PG_BINARIES=1 (CI sets it).
pub fn pg_binaries_present() -> bool {
    let probe = std::process::Command::new("bash")
        .arg("-c")
        .arg(concat!(
            ". ",
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/pg.sh && pg_bindir"
        ))
        .output()
        .expect("bash");
    if !probe.status.success() {
        assert!(
            std::env::var("REQUIRE_PG_BINARIES").as_deref() != Ok("1"),
            "REQUIRE_PG_BINARIES=1 but initdb/pg_ctl were not found"
        );
        eprintln!("skipped: PostgreSQL server binaries (initdb, pg_ctl) not found");
    }
    probe.status.success()
}

/// A private cluster of this test's own, stopped and removed when dropped.
pub struct Cluster(pub std::path::PathBuf);

impl Cluster {
    /// A cluster directory that does not exist yet; nothing starts until [`Cluster::start`].
    pub fn new(label: &str) -> Cluster {
        // Unix socket paths are short: a directory directly under /tmp.
        Cluster(std::path::PathBuf::from(format!(
            "/tmp/{}",
            unique_name(label)
        )))
    }

    /// Starts (or restarts) the cluster with `scripts/pg.sh start` and returns its URL.
    pub fn start(&self, env: &[(&str, &str)]) -> String {
        let out = pg_sh(&["start", self.0.to_str().unwrap()], env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// A streaming replica of this (running) cluster, started with `scripts/pg.sh
    /// replica`, and its URL.
    pub fn replica(&self, label: &str) -> (Cluster, String) {
        let replica = Cluster::new(label);
        let out = pg_sh(
            &[
                "replica",
                self.0.to_str().unwrap(),
                replica.0.to_str().unwrap(),
            ],
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        (replica, url)
    }

    /// A pgbouncer in `mode` (transaction or session) with `pool_size` server connections
    /// in front of this (running) cluster, and its URL; stopped when dropped.
    pub fn bouncer(&self, label: &str, mode: &str, pool_size: usize) -> (Bouncer, String) {
        self.bouncer_with(label, mode, pool_size, "")
    }

    /// [`Cluster::bouncer`] with `extra` lines in its `[pgbouncer]` section.
    pub fn bouncer_with(
        &self,
        label: &str,
        mode: &str,
        pool_size: usize,
        extra: &str,
    ) -> (Bouncer, String) {
        let bouncer = Bouncer(Cluster::new(label).0.clone());
        let size = pool_size.to_string();
        let out = pg_sh(
            &[
                "bouncer",
                self.0.to_str().unwrap(),
                bouncer.0.to_str().unwrap(),
                mode,
            ],
            &[("POOL_SIZE", &size), ("PGB_EXTRA", extra)],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        (bouncer, url)
    }

    /// The server's processes: the postmaster (from `postmaster.pid`) and its children.
    fn pids(&self) -> Vec<String> {
        let Ok(file) = std::fs::read_to_string(self.0.join("data/postmaster.pid")) else {
            return Vec::new();
        };
        let Some(postmaster) = file.lines().next().map(str::trim).map(str::to_owned) else {
            return Vec::new();
        };
        let children = std::process::Command::new("pgrep")
            .args(["-P", &postmaster])
            .output()
            .expect("pgrep");
        let mut pids: Vec<String> = String::from_utf8_lossy(&children.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        pids.push(postmaster);
        pids
    }

    /// Sends `signal` to every process of the server.
    fn signal(&self, signal: &str) {
        let pids = self.pids();
        if !pids.is_empty() {
            let _ = std::process::Command::new("kill")
                .arg(format!("-{signal}"))
                .args(&pids)
                .status();
        }
    }

    /// Freezes the server (SIGSTOP to every process): its sockets stay open and the
    /// kernel keeps accepting, but nothing answers, as with a hung host. The postmaster
    /// first, so no backend is forked after its children were listed.
    pub fn freeze(&self) {
        if let Some(postmaster) = self.pids().pop() {
            let _ = std::process::Command::new("kill")
                .args(["-STOP", &postmaster])
                .status();
        }
        self.signal("STOP");
    }

    /// Undoes [`Cluster::freeze`].
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    /// Kills the server as a crash would (`pg_ctl -m immediate stop`): no checkpoint, every
    /// session cut off at once; the files stay. Takes the cluster's directory, so it runs on
    /// a thread of its own (`spawn_blocking`).
    pub fn crash_in(dir: &std::path::Path) {
        Cluster::pg_ctl(dir, &["-m", "immediate", "-w", "stop"]);
    }

    /// Promotes the standby in `dir` to a primary (`pg_ctl promote`), waiting until it takes
    /// writes.
    pub fn promote_in(dir: &std::path::Path) {
        Cluster::pg_ctl(dir, &["-w", "-t", "60", "promote"]);
    }

    /// Runs `pg_ctl -D <dir>/data args` as the cluster's owner, through `scripts/pg.sh`'s own
    /// functions (which find the binaries and the account).
    fn pg_ctl(dir: &std::path::Path, args: &[&str]) {
        let script = concat!(
            ". ",
            env!("CARGO_MANIFEST_DIR"),
            r#"/scripts/pg.sh && dir=$1 && shift && pg_as_owner "$(pg_bindir)/pg_ctl" -D "$dir/data" "$@""#
        );
        let out = std::process::Command::new("bash")
            .args(["-c", script, "pg_ctl"])
            .arg(dir)
            .args(args)
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "pg_ctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server, keeping its files.
    pub fn stop(&self) {
        let out = pg_sh(&["stop", self.0.to_str().unwrap()], &[]);
        assert!(out.status.success(), "pg.sh stop failed");
    }
}

/// A pgbouncer process of a test's own (see [`Cluster::bouncer`]).
pub struct Bouncer(pub std::path::PathBuf);

impl Drop for Bouncer {
    fn drop(&mut self) {
        pg_sh(&["bouncer-stop", self.0.to_str().unwrap()], &[]);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// True if `pgbouncer` is installed; otherwise says the test is skipped, or fails when
/// REQUIRE_PG_BINARIES=1.
pub fn pgbouncer_present() -> bool {
    let found = ["pgbouncer", "/usr/sbin/pgbouncer"].iter().any(|bin| {
        std::process::Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !found {
        assert!(
            std::env::var("REQUIRE_PG_BINARIES").as_deref() != Ok("1"),
            "REQUIRE_PG_BINARIES=1 but pgbouncer was not found (apt-get install pgbouncer)"
        );
        eprintln!("skipped: pgbouncer not found");
    }
    found
}

/// True if `wrk` is installed; otherwise says the test is skipped, or fails when
/// REQUIRE_WRK=1.
pub fn wrk_present() -> bool {
    let found = std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        assert!(
            std::env::var("REQUIRE_WRK").as_deref() != Ok("1"),
            "REQUIRE_WRK=1 but wrk was not found (apt-get install wrk)"
        );
        eprintln!("skipped: wrk not found (apt-get install wrk)");
    }
    found
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A frozen server cannot be stopped.
        self.thaw();
        pg_sh(&["stop", self.0.to_str().unwrap()], &[]);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
