//! TLS, as libpq reads the URL (`sslmode`, `sslrootcert`), against a private cluster with
//! `ssl = on` and certificates made by openssl for the test: a CA, and a server certificate
//! for `db.test` and 127.0.0.1 only, so `localhost` is a wrong host name.
//! Skipped without PostgreSQL's server binaries unless REQUIRE_PG_BINARIES=1.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use app::db::{self, DatabaseUrl};
use common::{Cluster, count, migrate, ok, stderr};
use diesel::sql_types::Bool;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// A running private cluster that speaks TLS on 127.0.0.1.
struct TlsServer {
    cluster: Cluster,
    port: u16,
}

impl TlsServer {
    /// Starts one; `hostssl_only` refuses TCP connections that are not encrypted.
    fn start(label: &str, hostssl_only: bool) -> Option<TlsServer> {
        if !common::pg_binaries_present() {
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
        let conf = format!(
            "\nssl = on\nssl_cert_file = '{0}/server.crt'\nssl_key_file = '{0}/server.key'\n",
            dir.display()
        );
        append(&data.join("postgresql.conf"), &conf);
        let tcp = if hostssl_only { "hostssl" } else { "host" };
        std::fs::write(
            data.join("pg_hba.conf"),
            format!("local all all trust\n{tcp} all all 127.0.0.1/32 trust\n"),
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
    let key = dir.join("server.key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
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
    let Some(server) = TlsServer::start("tls", false) else {
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
    let Some(server) = TlsServer::start("hostssl", true) else {
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
