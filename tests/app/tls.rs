//! TLS, as libpq reads the URL (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`), against a
//! private cluster with `ssl = on` and certificates made by openssl for the test: a CA, a
//! server certificate for `db.test` and 127.0.0.1 only, so `localhost` is a wrong host
//! name, and a client certificate for the user `postgres`.
//! Skipped without PostgreSQL's server binaries unless REQUIRE_PG_BINARIES=1.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{self, Cluster, count, migrate, ok, stderr};
use app::db::{self, DatabaseUrl};
use diesel::sql_types::Bool;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// A running private cluster that speaks TLS on 127.0.0.1.
struct TlsServer {
    cluster: Cluster,
    port: u16,
}

impl TlsServer {
    /// Starts one; `tcp` is pg_hba.conf's rule for 127.0.0.1 (its Unix socket trusts all).
    fn start(label: &str, tcp: &str) -> Option<TlsServer> {
        if !support::pg_binaries_present() {
            return None;
        }
        let cluster = Cluster::new(label);
        cluster.start(&[]); // initdb, then stop to configure TLS
        cluster.stop();
        let dir = cluster.0.clone();
        make_certificates(&dir);
        let data = dir.join("data");
        let owner = std::fs::metadata(&data).unwrap();
        for file in ["server.crt", "server.key"] {
            let path = dir.join(file);
            std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).unwrap();
        }
        // ssl_ca_file: the CA that client certificates must chain to.
        let conf = format!(
            "\nssl = on\nssl_cert_file = '{0}/server.crt'\nssl_key_file = '{0}/server.key'\n\
             ssl_ca_file = '{0}/ca.crt'\n",
            dir.display()
        );
        append(&data.join("postgresql.conf"), &conf);
        std::fs::write(
            data.join("pg_hba.conf"),
            format!("local all all trust\n{tcp}\n"),
        )
        .unwrap();
        let port = free_port();
        let opts = format!("-c listen_addresses=127.0.0.1 -c port={port}");
        cluster.start(&[("PG_EXTRA_OPTS", &opts)]);
        Some(TlsServer { cluster, port })
    }

    /// A URL to this server's `postgres` database through `host`, with `query`.
    fn url(&self, host: &str, query: &str) -> DatabaseUrl {
        let raw = format!("postgres://postgres@{host}:{}/postgres?{query}", self.port);
        DatabaseUrl::parse(&raw).unwrap()
    }

    fn ca(&self) -> PathBuf {
        self.cluster.0.join("ca.crt")
    }

    /// A file of the test's certificates (`ca.crt`, `server.crt`, `client.key`, ...).
    fn file(&self, name: &str) -> String {
        self.cluster.0.join(name).display().to_string()
    }

    /// The directory of the server's Unix socket, percent-encoded for a URL's host.
    fn socket_host(&self) -> String {
        self.cluster.0.display().to_string().replace('/', "%2F")
    }
}

fn append(path: &Path, text: &str) {
    let old = std::fs::read_to_string(path).unwrap();
    std::fs::write(path, old + text).unwrap();
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
    };
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca = [
        "-x509",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-subj",
        "/CN=test-ca",
    ];
    run(&[&["req"][..], &key, &ca, &["-days", "2"]].concat());
    let csr = [
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=db.test",
    ];
    run(&[&["req"][..], &key, &csr].concat());
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:db.test,IP:127.0.0.1\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-extfile",
        "san.ext",
        "-days",
        "2",
    ]);
    // The client's: CN is the user name, as `cert` authentication requires.
    let csr = [
        "-keyout",
        "client.key",
        "-out",
        "client.csr",
        "-subj",
        "/CN=postgres",
    ];
    run(&[&["req"][..], &key, &csr].concat());
    run(&[
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "client.crt",
        "-days",
        "2",
    ]);
    for key in ["server.key", "client.key"] {
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o600);
        std::fs::set_permissions(dir.join(key), mode).unwrap();
    }
}

#[derive(diesel::QueryableByName)]
struct Encrypted {
    #[diesel(sql_type = Bool)]
    ssl: bool,
}

async fn encrypted(conn: &mut AsyncPgConnection) -> bool {
    let row: Encrypted =
        diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .get_result(conn)
            .await
            .unwrap();
    row.ssl
}

/// Connects to `url` and says whether the session is encrypted, or the error.
async fn try_encrypted(url: &DatabaseUrl) -> Result<bool, String> {
    let mut conn = db::connect(url).await.map_err(|e| e.to_string())?;
    Ok(encrypted(&mut conn).await)
}

#[tokio::test]
async fn each_sslmode_encrypts_and_verifies_as_libpq_does() {
    let Some(server) = TlsServer::start("tls", "host all all 127.0.0.1/32 trust") else {
        return;
    };
    let ca = server.ca().display().to_string();
    let ip = "127.0.0.1";
    let verify = |mode: &str| format!("sslmode={mode}&sslrootcert={ca}");
    // prefer is libpq's default: encrypted when the server offers it.
    assert_eq!(
        try_encrypted(&server.url(ip, "application_name=t")).await,
        Ok(true)
    );
    assert_eq!(
        try_encrypted(&server.url(ip, "sslmode=prefer")).await,
        Ok(true)
    );
    assert_eq!(
        try_encrypted(&server.url(ip, "sslmode=require")).await,
        Ok(true)
    );
    assert_eq!(
        try_encrypted(&server.url(ip, "sslmode=disable")).await,
        Ok(false)
    );
    // The certificate names 127.0.0.1 and db.test: verify-full accepts the address.
    assert_eq!(
        try_encrypted(&server.url(ip, &verify("verify-full"))).await,
        Ok(true)
    );
    // localhost reaches the same server under a name the certificate does not carry.
    let wrong_name = try_encrypted(&server.url("localhost", &verify("verify-full"))).await;
    let err = wrong_name.expect_err("verify-full must refuse a wrong host name");
    assert!(
        err.contains("not valid for") && err.contains("localhost"),
        "{err}"
    );
    // verify-ca checks the chain only.
    assert_eq!(
        try_encrypted(&server.url("localhost", &verify("verify-ca"))).await,
        Ok(true)
    );
    // A root that did not sign the server's certificate: refused.
    let other = server.cluster.0.join("server.crt").display().to_string();
    let query = format!("sslmode=verify-ca&sslrootcert={other}");
    let err = try_encrypted(&server.url(ip, &query)).await.unwrap_err();
    assert!(err.contains("certificate"), "{err}");
    // No root certificate at all: a clear error, never an unverified session.
    let query = "sslmode=verify-full&sslrootcert=/nonexistent/root.crt";
    let err = try_encrypted(&server.url(ip, query)).await.unwrap_err();
    assert!(err.contains("/nonexistent/root.crt"), "{err}");
    let err = try_encrypted(&server.url(ip, "sslmode=verify-everything"))
        .await
        .unwrap_err();
    assert!(err.contains("sslmode"), "{err}");
}

#[tokio::test]
async fn sslmode_require_works_for_every_path_and_a_hostssl_server_refuses_plaintext() {
    use app::models::{NewTask, Title, User};
    let Some(server) = TlsServer::start("hostssl", "hostssl all all 127.0.0.1/32 trust") else {
        return;
    };
    let url = server
        .url("127.0.0.1", "sslmode=require")
        .with_database("tls_app");
    let init = Command::new(env!("CARGO_BIN_EXE_init_db"))
        .args(["--url", url.expose(), "--seed"])
        .output()
        .unwrap();
    ok(init);
    ok(migrate(Some(&url), &["current", "--check"]));

    let pool = db::build_pool(&db::DbConfig::new(url.clone())).unwrap();
    let mut conn = pool.get().await.unwrap();
    assert!(encrypted(&mut conn).await, "pooled connection");
    let owner = User::all(&conn).await.unwrap()[0].id;
    let before = count(&mut conn, "tasks").await;
    let title = Title::parse("over TLS").unwrap();
    let rows: Vec<NewTask> = (0..10).map(|_| NewTask::new(owner, &title)).collect();
    assert_eq!(app::bulk::copy_insert(&url, &rows).await.unwrap(), 10);
    assert_eq!(count(&mut conn, "tasks").await, before + 10);

    let plain = server.url("127.0.0.1", "sslmode=disable");
    let err = try_encrypted(&plain).await.unwrap_err();
    assert!(err.contains("no encryption"), "{err}");
    let out = migrate(Some(&plain), &["current"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no encryption"), "{}", stderr(&out));
}

/// Runs `migrate current` on `url` with `env` added (HOME, SSL_CERT_FILE): the settings a
/// test cannot change in its own process without disturbing the others.
fn migrate_with(url: &DatabaseUrl, env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_migrate"))
        .args(["current", "--url", url.expose()])
        .env_remove("DATABASE_URL")
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

/// A home directory with `~/.postgresql/<name>` copied from `files`.
fn home_with(label: &str, files: &[(&str, &str)]) -> support::TempDir {
    let home = support::TempDir::new(label);
    let dir = home.0.join(".postgresql");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, from) in files {
        std::fs::copy(from, dir.join(name)).unwrap();
    }
    home
}

/// `sslrootcert=system` trusts the system's roots, public CAs that sign for anyone: as in
/// libpq it means verify-full when sslmode is not given, and refuses any weaker mode.
#[tokio::test]
async fn sslrootcert_system_means_verify_full() {
    let Some(server) = TlsServer::start("tls_system", "host all all 127.0.0.1/32 trust") else {
        return;
    };
    for mode in ["disable", "prefer", "require", "verify-ca"] {
        let query = format!("sslmode={mode}&sslrootcert=system");
        let err = try_encrypted(&server.url("127.0.0.1", &query))
            .await
            .unwrap_err();
        let expected = format!(
            "weak sslmode \"{mode}\" may not be used with sslrootcert=system (use \"verify-full\")"
        );
        assert!(err.contains(&expected), "{err}");
    }
    // The test's CA is no system root: without sslmode, the certificate is checked and
    // refused (it was once accepted unchecked, as sslmode=prefer).
    let err = try_encrypted(&server.url("127.0.0.1", "sslrootcert=system"))
        .await
        .unwrap_err();
    assert!(
        err.contains("UnknownIssuer") || err.contains("no root certificates"),
        "{err}"
    );
    // With the test's CA as the system's (SSL_CERT_FILE), verify-full: the address passes,
    // a name the certificate does not carry does not.
    let ca = server.file("ca.crt");
    let system = [("SSL_CERT_FILE", ca.as_str())];
    ok(migrate_with(
        &server.url("127.0.0.1", "sslrootcert=system"),
        &system,
    ));
    let out = migrate_with(&server.url("localhost", "sslrootcert=system"), &system);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not valid for"), "{}", stderr(&out));
}

/// libpq's compatibility rule: `require` with a root certificate, given as `sslrootcert` or
/// found in `~/.postgresql/root.crt`, checks the chain as verify-ca does.
#[tokio::test]
async fn require_checks_the_chain_when_a_root_certificate_is_at_hand() {
    let Some(server) = TlsServer::start("tls_require", "host all all 127.0.0.1/32 trust") else {
        return;
    };
    // localhost: not the certificate's name, which verify-ca does not check.
    let require = server.url("localhost", "sslmode=require");
    let (ca, foreign) = (server.file("ca.crt"), server.file("server.crt"));
    let home = home_with("home_ca", &[("root.crt", &ca)]);
    ok(migrate_with(
        &require,
        &[("HOME", home.0.to_str().unwrap())],
    ));
    let home = home_with("home_foreign", &[("root.crt", &foreign)]);
    let out = migrate_with(&require, &[("HOME", home.0.to_str().unwrap())]);
    assert!(
        !out.status.success(),
        "a root that did not sign the server's was ignored"
    );
    assert!(stderr(&out).contains("certificate"), "{}", stderr(&out));
    // An empty home: nothing to check against, encrypted all the same.
    let home = support::TempDir::new("home_empty");
    ok(migrate_with(
        &require,
        &[("HOME", home.0.to_str().unwrap())],
    ));

    let query = format!("sslmode=require&sslrootcert={foreign}");
    let err = try_encrypted(&server.url("localhost", &query))
        .await
        .unwrap_err();
    assert!(err.contains("certificate"), "{err}");
    // A `+` in a path is a `+`, as libpq reads it, not a form-encoded space.
    let plus = server.cluster.0.join("ca+copy.crt");
    std::fs::copy(&ca, &plus).unwrap();
    let query = format!("sslmode=verify-full&sslrootcert={}", plus.display());
    assert_eq!(
        try_encrypted(&server.url("127.0.0.1", &query)).await,
        Ok(true)
    );
}

/// libpq never uses TLS on a Unix socket (the server answers no to it there): any sslmode
/// connects, unencrypted, whether the socket is the URL's host or its `host=` parameter.
#[tokio::test]
async fn unix_sockets_ignore_sslmode() {
    let Some(server) = TlsServer::start("tls_socket", "hostssl all all 127.0.0.1/32 trust") else {
        return;
    };
    let socket = server.socket_host();
    for mode in ["require", "verify-ca", "verify-full", "prefer", "disable"] {
        let url = server.url(&socket, &format!("sslmode={mode}"));
        assert_eq!(try_encrypted(&url).await, Ok(false), "{mode}");
        let raw = format!(
            "postgres:///postgres?user=postgres&host={socket}&port={}&sslmode={mode}",
            server.port
        );
        let url = DatabaseUrl::parse(&raw).unwrap();
        assert_eq!(try_encrypted(&url).await, Ok(false), "{mode}, host=");
    }
    // The weak-mode rule of sslrootcert=system holds for sockets too, as in libpq.
    let url = server.url(&socket, "sslmode=require&sslrootcert=system");
    let err = try_encrypted(&url).await.unwrap_err();
    assert!(err.contains("weak sslmode"), "{err}");
}

/// A server that authenticates clients by certificate (`cert` in pg_hba.conf) accepts ours,
/// given as sslcert and sslkey or found in `~/.postgresql`; one without the other, or a file
/// that cannot be read, is refused by name before connecting.
#[tokio::test]
async fn client_certificates_authenticate() {
    let Some(server) = TlsServer::start("tls_cert", "hostssl all all 127.0.0.1/32 cert") else {
        return;
    };
    let (cert, key) = (server.file("client.crt"), server.file("client.key"));
    let query = format!("sslmode=require&sslcert={cert}&sslkey={key}");
    let url = server.url("127.0.0.1", &query);
    let mut conn = db::connect(&url).await.unwrap();
    assert!(encrypted(&mut conn).await);
    #[derive(diesel::QueryableByName)]
    struct Dn {
        #[diesel(sql_type = diesel::sql_types::Text)]
        client_dn: String,
    }
    let dn: Dn =
        diesel::sql_query("SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .get_result(&mut conn)
            .await
            .unwrap();
    assert_eq!(dn.client_dn, "/CN=postgres");
    // The pool too.
    let pool = db::build_pool(&db::DbConfig::new(url)).unwrap();
    assert!(encrypted(&mut pool.get().await.unwrap()).await, "pooled");

    // No certificate: the server refuses.
    let err = try_encrypted(&server.url("127.0.0.1", "sslmode=require"))
        .await
        .unwrap_err();
    assert!(err.contains("certificate"), "{err}");
    // libpq's defaults, ~/.postgresql/postgresql.crt and .key.
    let home = home_with(
        "home_cert",
        &[("postgresql.crt", &cert), ("postgresql.key", &key)],
    );
    let home_dir = home.0.to_str().unwrap();
    ok(migrate_with(
        &server.url("127.0.0.1", "sslmode=require"),
        &[("HOME", home_dir)],
    ));

    let refused = [
        (format!("sslcert={cert}"), "add sslkey=".to_owned()),
        (format!("sslkey={key}"), "add sslcert=".to_owned()),
        (
            format!("sslcert=/nonexistent/c.crt&sslkey={key}"),
            "sslcert /nonexistent/c.crt: ".to_owned(),
        ),
        (
            format!("sslcert={cert}&sslkey=/nonexistent/c.key"),
            "sslkey /nonexistent/c.key: ".to_owned(),
        ),
        (
            format!("sslcert={cert}&sslkey={}", server.file("server.key")),
            "do not belong together".to_owned(),
        ),
        // Never read: it would block, or fill memory, outside every timeout.
        (
            format!("sslcert=/dev/zero&sslkey={key}"),
            "sslcert /dev/zero: not a regular file".to_owned(),
        ),
        // A certificate is no key.
        (
            format!("sslcert={cert}&sslkey={cert}"),
            format!("sslkey {cert}: "),
        ),
    ];
    for (query, expected) in refused {
        let url = server.url("127.0.0.1", &format!("sslmode=require&{query}"));
        let err = try_encrypted(&url).await.unwrap_err();
        assert!(
            err.contains(&expected),
            "{query}: {expected:?} not in {err}"
        );
    }
    // A key others may read is refused, as libpq does.
    let open = server.cluster.0.join("open.key");
    std::fs::copy(&key, &open).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o644);
    std::fs::set_permissions(&open, mode).unwrap();
    let query = format!("sslmode=require&sslcert={cert}&sslkey={}", open.display());
    let err = try_encrypted(&server.url("127.0.0.1", &query))
        .await
        .unwrap_err();
    assert!(err.contains("chmod 600"), "{err}");
}
