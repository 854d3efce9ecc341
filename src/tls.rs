//! TLS for every connection, as libpq reads the URL: `sslmode` (`disable`, `prefer`, the
//! default, `require`, `verify-ca`, `verify-full`), `sslrootcert` (a PEM file, or `system`
//! for the operating system's roots) and the client certificate, `sslcert` and `sslkey`.
//! Unix sockets never use TLS, as in libpq. Through rustls, via tokio-postgres-rustls: pure
//! Rust like the rest of the stack, so nothing to install (no OpenSSL headers).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, InconsistentKeys, RootCertStore,
    SignatureScheme,
};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

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

/// A client certificate chain and its private key.
type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

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

/// The one client certificate, offered to every server that asks.
#[derive(Debug)]
struct ClientCert(Arc<CertifiedKey>);

impl ResolvesClientCert for ClientCert {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// `~/.postgresql/<name>`, libpq's default place for certificates and keys.
fn in_home(name: &str) -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".postgresql").join(name))
}

/// The client certificate and key: `sslcert` and `sslkey`, each defaulting as in libpq to
/// `~/.postgresql/postgresql.crt` and `.key` when that file exists. One without the other
/// is refused: the server would see no certificate and fail with a less useful message.
fn client_identity(
    cert: Option<&String>,
    key: Option<&String>,
) -> Result<Option<Identity>, String> {
    let or_default = |given: Option<&String>, name: &str| match given {
        Some(path) => Some(PathBuf::from(path)),
        None => in_home(name).filter(|path| path.exists()),
    };
    let (cert, key) = (
        or_default(cert, "postgresql.crt"),
        or_default(key, "postgresql.key"),
    );
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        (Some(cert), None) => {
            return Err(format!(
                "sslcert {} is given without its private key: add sslkey=<file> to the URL",
                cert.display()
            ));
        }
        (None, Some(key)) => {
            return Err(format!(
                "sslkey {} is given without its certificate: add sslcert=<file> to the URL",
                key.display()
            ));
        }
    };
    let bad = |param: &str, path: &Path, e: &dyn std::fmt::Display| {
        format!("{param} {}: {e}", path.display())
    };
    regular_file("sslcert", &cert)?;
    let chain = (CertificateDer::pem_file_iter(&cert).map_err(|e| bad("sslcert", &cert, &e))?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("sslcert", &cert, &e))?;
    if chain.is_empty() {
        return Err(bad("sslcert", &cert, &"no PEM certificate in it"));
    }
    regular_file("sslkey", &key)?;
    key_private_enough(&key)?;
    let key_der = PrivateKeyDer::from_pem_file(&key).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => bad(
            "sslkey",
            &key,
            &"no unencrypted PEM private key in it (an encrypted key needs sslpassword, \
              which is not supported: decrypt it with `openssl pkey`)",
        ),
        e => bad("sslkey", &key, &e),
    })?;
    Ok(Some((chain, key_der)))
}

/// Refuses what is not a plain file before reading it: a FIFO or a device (`/dev/zero`)
/// would block the connect, or fill memory, outside every timeout.
fn regular_file(param: &str, path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(format!("{param} {}: not a regular file", path.display())),
        Err(e) => Err(format!("{param} {}: {e}", path.display())),
    }
}

/// libpq refuses a private key others may read: at most 0600, or 0640 when root owns it
/// (a group such as ssl-cert reading a system key).
fn key_private_enough(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("sslkey {}: {e}", path.display()))?;
    let forbidden = if meta.uid() == 0 { 0o037 } else { 0o077 };
    if meta.mode() & forbidden != 0 {
        return Err(format!(
            "sslkey {}: others may read it (mode {:o}): chmod 600 it",
            path.display(),
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

/// The operating system's roots, for `sslrootcert=system`.
fn system_roots() -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    match store.is_empty() {
        true => Err("sslrootcert=system: this system has no root certificates".into()),
        false => Ok(store),
    }
}

/// The roots in a PEM file: `sslrootcert`'s, or `~/.postgresql/root.crt`.
fn roots_from(path: &Path) -> Result<RootCertStore, String> {
    regular_file("sslrootcert", path)?;
    let mut store = RootCertStore::empty();
    let unreadable = |e: &dyn std::fmt::Display| format!("sslrootcert {}: {e}", path.display());
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| unreadable(&e))? {
        store
            .add(cert.map_err(|e| unreadable(&e))?)
            .map_err(|e| unreadable(&e))?;
    }
    if store.is_empty() {
        return Err(unreadable(&"no PEM certificate in it"));
    }
    Ok(store)
}

/// `prefer` and `require`: any certificate, as libpq accepts; the handshake's signatures are
/// still checked against it.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: webpki's checks, except that any host name will do.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain first and the name last: a name error means the chain held.
        match (self.0).verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
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
