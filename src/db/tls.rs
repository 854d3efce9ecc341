//! TLS for every connection, as libpq reads the URL: `sslmode` (`disable`, `prefer`, the
//! default, `require`, `verify-ca`, `verify-full`), `sslrootcert` (a PEM file, or `system`
//! for the operating system's roots) and the client certificate, `sslcert` and `sslkey`.
//! Unix sockets never use TLS, as in libpq. Through rustls, via tokio-postgres-rustls: pure
//! Rust like the rest of the stack, so nothing to install (no OpenSSL headers).

mod certs;
mod verify;

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, InconsistentKeys, RootCertStore};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

use certs::{ClientCert, Identity, client_identity, in_home, roots_from, system_roots};
use verify::{AnyCertificate, AnyName};

/// What to check of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// The chain up to a trusted root, not the host name (`verify-ca`).
    Chain,
    /// The chain and the host name (`verify-full`).
    Full,
}

/// The URL parameters read here and never handed to tokio-postgres, which would misread
/// (`tcp_user_timeout`, in seconds there) or refuse them.
const OURS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "tcp_user_timeout",
];

/// What tokio-postgres reads from a URL's query.
const DRIVER: &[&str] = &[
    "application_name",
    "channel_binding",
    "connect_timeout",
    "dbname",
    "host",
    "hostaddr",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "load_balance_hosts",
    "options",
    "password",
    "port",
    "sslnegotiation",
    "target_session_attrs",
    "user",
];

/// libpq's parameters that nothing here reads: named as such, not as typos.
const LIBPQ_ONLY: &[&str] = &[
    "client_encoding",
    "fallback_application_name",
    "gssdelegation",
    "gssencmode",
    "gsslib",
    "krbsrvname",
    "passfile",
    "replication",
    "require_auth",
    "requirepeer",
    "requiressl",
    "service",
    "ssl_max_protocol_version",
    "ssl_min_protocol_version",
    "sslcertmode",
    "sslcompression",
    "sslcrl",
    "sslcrldir",
    "sslpassword",
    "sslsni",
];

/// The driver's configuration and TLS connector for a URL, or what is wrong with its
/// parameters. tokio-postgres knows only `disable`, `prefer` and `require`: the stricter
/// modes become `require` plus a rustls verifier, and `sslrootcert`, `sslcert` and `sslkey`
/// never reach it.
pub(crate) fn configure(
    url: &url::Url,
) -> Result<(tokio_postgres::Config, MakeRustlsConnect), String> {
    let params = params(url);
    for (key, _) in &params {
        if LIBPQ_ONLY.contains(&key.as_str()) {
            return Err(format!(
                "URL parameter {key:?} is libpq's, and not supported here (see docs/security.md)"
            ));
        }
        if !OURS.contains(&key.as_str()) && !DRIVER.contains(&key.as_str()) {
            return Err(format!("unknown URL parameter {key:?}"));
        }
    }
    // As libpq: the last of a repeated parameter wins.
    let get = |key: &str| params.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v);
    let mut config: tokio_postgres::Config =
        (without_params(url, OURS).as_str().parse()).map_err(|e: tokio_postgres::Error| {
            match std::error::Error::source(&e) {
                Some(cause) => format!("{e}: {cause}"),
                None => e.to_string(),
            }
        })?;
    let root = get("sslrootcert").map(String::as_str);
    let system = root == Some("system");
    // libpq: the system's roots are public CAs, which sign certificates for anyone; only
    // the host name tells ours from another's, so nothing weaker than verify-full.
    let mode =
        get("sslmode")
            .map(String::as_str)
            .unwrap_or(if system { "verify-full" } else { "prefer" });
    if !["disable", "prefer", "require", "verify-ca", "verify-full"].contains(&mode) {
        return Err(format!(
            "sslmode {mode:?} is not one of disable, prefer, require, verify-ca, verify-full"
        ));
    }
    if system && mode != "verify-full" {
        return Err(format!(
            "weak sslmode {mode:?} may not be used with sslrootcert=system (use \"verify-full\")"
        ));
    }
    keepalive_defaults(&params, &mut config);
    if let Some(ms) = get("tcp_user_timeout") {
        // tokio-postgres reads tcp_user_timeout in seconds; libpq, whose URLs these are, in
        // milliseconds (so pg_dump, given the same URL, agrees with us).
        let ms: u64 = (ms.trim().parse())
            .map_err(|_| format!("tcp_user_timeout must be whole milliseconds, got {ms:?}"))?;
        // 0, as in libpq: the system's default.
        if ms > 0 {
            config.tcp_user_timeout(std::time::Duration::from_millis(ms));
        }
    }
    // libpq never uses TLS on a Unix socket (the server would refuse it), whatever sslmode
    // says, and reads no certificate for it.
    let socket_only = config.get_hostaddrs().is_empty()
        && !config.get_hosts().is_empty()
        && (config.get_hosts().iter()).all(|host| matches!(host, Host::Unix(_)));
    if socket_only || mode == "disable" {
        config.ssl_mode(SslMode::Disable);
        return Ok((config, MakeRustlsConnect::new(client_config(None, None)?)));
    }
    let default_root = in_home("root.crt").filter(|path| path.exists());
    let roots = || -> Result<RootCertStore, String> {
        match (root, &default_root) {
            (Some("system"), _) => system_roots(),
            (Some(path), _) => roots_from(Path::new(path)),
            (None, Some(path)) => roots_from(path),
            (None, None) => Err(format!(
                "sslmode={mode} needs the server's root certificate: add sslrootcert=<file> \
                 (or sslrootcert=system) to the URL, or put it in ~/.postgresql/root.crt"
            )),
        }
    };
    let (ssl, check) = match mode {
        "prefer" => (SslMode::Prefer, None),
        // libpq: with a root certificate, given or in ~/.postgresql/root.crt, require
        // checks the chain as verify-ca does.
        "require" if root.is_none() && default_root.is_none() => (SslMode::Require, None),
        "require" | "verify-ca" => (SslMode::Require, Some((roots()?, Check::Chain))),
        _ => (SslMode::Require, Some((roots()?, Check::Full))),
    };
    config.ssl_mode(ssl);
    let identity = client_identity(get("sslcert"), get("sslkey"))?;
    Ok((
        config,
        MakeRustlsConnect::new(client_config(check, identity)?),
    ))
}

/// The query's parameters, percent-decoded as libpq does: a `+` stays a `+` (form
/// decoding, `Url::query_pairs`, would make it a space: `sslrootcert=/ca+1.pem` broke).
pub(crate) fn params(url: &url::Url) -> Vec<(String, String)> {
    let decode =
        |s: &str| (percent_encoding::percent_decode_str(s).decode_utf8_lossy()).into_owned();
    (url.query().unwrap_or("").split('&'))
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

/// `url` without the query parameters named in `keys`; the others keep their encoding as
/// written. (Re-encoding them through `query_pairs_mut` would turn `%20` into `+`, which
/// neither libpq nor tokio-postgres reads as a space: `options=-c%20x%3D1` broke.)
pub(crate) fn without_params(url: &url::Url, keys: &[&str]) -> url::Url {
    let mut out = url.clone();
    let kept: Vec<&str> = (url.query().unwrap_or("").split('&'))
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or("");
            let key = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
            !keys.contains(&key.as_ref())
        })
        .collect();
    out.set_query((!kept.is_empty()).then(|| kept.join("&")).as_deref());
    out
}

/// TCP bounds where the URL sets none. libpq leaves them to the kernel: keepalives after
/// 2 h idle, and a write to a vanished peer retried for about 15 min. A server that is gone
/// (power, network, a failover that sent no FIN) must be noticed in well under a minute.
/// Unix sockets ignore them.
fn keepalive_defaults(params: &[(String, String)], config: &mut tokio_postgres::Config) {
    use std::time::Duration;
    let given = |key: &str| params.iter().any(|(k, _)| k == key);
    if !given("keepalives_idle") {
        config.keepalives_idle(Duration::from_secs(30));
    }
    if !given("keepalives_interval") {
        config.keepalives_interval(Duration::from_secs(10));
    }
    if !given("keepalives_retries") {
        config.keepalives_retries(3);
    }
    if !given("tcp_user_timeout") {
        config.tcp_user_timeout(Duration::from_secs(30));
    }
}

/// rustls's configuration: `check` (the roots and what to verify; none: any certificate)
/// and the client certificate to present, if any.
fn client_config(
    check: Option<(RootCertStore, Check)>,
    identity: Option<Identity>,
) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let verifier: Arc<dyn ServerCertVerifier> = match check {
        None => Arc::new(AnyCertificate(provider.clone())),
        Some((roots, check)) => {
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| e.to_string())?;
            match check {
                Check::Full => webpki,
                Check::Chain => Arc::new(AnyName(webpki)),
            }
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let Some((chain, key)) = identity else {
        return Ok(builder.with_no_client_auth());
    };
    let signer =
        (provider.key_provider.load_private_key(key)).map_err(|e| format!("sslkey: {e}"))?;
    let certified = CertifiedKey::new(chain, signer);
    // rustls's with_client_auth_cert refuses a version 1 certificate, which openssl still
    // makes by default and PostgreSQL accepts: its check of the pair needs a parsed
    // certificate, so for one it cannot parse, the key's SubjectPublicKeyInfo is looked
    // for in the certificate's bytes (where DER holds it verbatim).
    let mismatch = match certified.keys_match() {
        Ok(()) => false,
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => true,
        Err(_) => certified.key.public_key().is_some_and(|spki| {
            let cert: &[u8] = certified.cert[0].as_ref();
            !cert
                .windows(spki.len())
                .any(|window| window == spki.as_ref())
        }),
    };
    if mismatch {
        return Err(
            "sslcert and sslkey do not belong together: the key is not the \
                    certificate's"
                .into(),
        );
    }
    Ok(builder.with_client_cert_resolver(Arc::new(ClientCert(Arc::new(certified)))))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    fn configured(url: &str) -> tokio_postgres::Config {
        super::configure(&url::Url::parse(url).unwrap()).unwrap().0
    }

    #[test]
    fn tcp_bounds_default_to_under_a_minute_and_read_as_libpq_does() {
        let config = configured("postgres://h/db");
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(30));
        assert_eq!(
            config.get_tcp_user_timeout(),
            Some(&Duration::from_secs(30))
        );
        // libpq's unit for tcp_user_timeout is the millisecond.
        let config = configured("postgres://h/db?tcp_user_timeout=5000&keepalives_idle=7");
        assert_eq!(
            config.get_tcp_user_timeout(),
            Some(&Duration::from_millis(5000))
        );
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(7));
        let bad =
            super::configure(&url::Url::parse("postgres://h/db?tcp_user_timeout=soon").unwrap());
        assert!(bad.is_err());
    }
}
