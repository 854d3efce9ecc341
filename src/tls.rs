//! TLS for every connection, as libpq reads the URL: `sslmode` (`disable`, `prefer`, the
//! default, `require`, `verify-ca`, `verify-full`) and `sslrootcert` (a PEM file, or
//! `system` for the operating system's roots). Through rustls, via tokio-postgres-rustls:
//! pure Rust like the rest of the stack, so nothing to install (no OpenSSL headers).

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// What to check of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Nothing (`prefer`, `require`): encrypted, but not authenticated.
    Nothing,
    /// The chain up to a trusted root, not the host name (`verify-ca`).
    Chain,
    /// The chain and the host name (`verify-full`).
    Full,
}

/// The driver's configuration and TLS connector for a URL, or what is wrong with its TLS
/// settings. tokio-postgres knows only `disable`, `prefer` and `require`: the stricter modes
/// become `require` plus a rustls verifier, and `sslrootcert` never reaches it.
pub(crate) fn configure(
    url: &url::Url,
) -> Result<(tokio_postgres::Config, MakeRustlsConnect), String> {
    let (mut mode, mut root, mut user_timeout) = ("prefer".to_owned(), None, None);
    for (key, value) in url.query_pairs().into_owned() {
        match key.as_str() {
            "sslmode" => mode = value,
            "sslrootcert" => root = Some(value),
            "tcp_user_timeout" => user_timeout = Some(value),
            _ => {}
        }
    }
    // tokio-postgres reads tcp_user_timeout in seconds; libpq, whose URLs these are, in
    // milliseconds (so pg_dump, given the same URL, agrees with us).
    let rest = without_params(url, &["sslmode", "sslrootcert", "tcp_user_timeout"]);
    let mut config: tokio_postgres::Config = rest.as_str().parse().map_err(|e| format!("{e}"))?;
    let (ssl, check) = match (mode.as_str(), &root) {
        ("disable", _) => (SslMode::Disable, Check::Nothing),
        ("prefer", _) => (SslMode::Prefer, Check::Nothing),
        // libpq: with a root certificate given, require checks the chain as verify-ca does.
        ("require", None) => (SslMode::Require, Check::Nothing),
        ("require" | "verify-ca", _) => (SslMode::Require, Check::Chain),
        ("verify-full", _) => (SslMode::Require, Check::Full),
        (other, _) => {
            return Err(format!(
                "sslmode {other:?} is not one of disable, prefer, require, verify-ca, verify-full"
            ));
        }
    };
    config.ssl_mode(ssl);
    keepalive_defaults(url, &mut config);
    if let Some(ms) = user_timeout {
        let ms: u64 = (ms.trim().parse())
            .map_err(|_| format!("tcp_user_timeout must be whole milliseconds, got {ms:?}"))?;
        // 0, as in libpq: the system's default.
        if ms > 0 {
            config.tcp_user_timeout(std::time::Duration::from_millis(ms));
        }
    }
    Ok((
        config,
        MakeRustlsConnect::new(client_config(check, root.as_deref())?),
    ))
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
fn keepalive_defaults(url: &url::Url, config: &mut tokio_postgres::Config) {
    use std::time::Duration;
    let given = |key: &str| url.query_pairs().any(|(k, _)| k == key);
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

fn client_config(check: Check, root: Option<&str>) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let verifier: Arc<dyn ServerCertVerifier> = match check {
        Check::Nothing => Arc::new(AnyCertificate(provider)),
        Check::Chain | Check::Full => {
            let roots = Arc::new(roots(root)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| e.to_string())?;
            match check {
                Check::Full => webpki,
                _ => Arc::new(AnyName(webpki)),
            }
        }
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// The trusted roots: `sslrootcert`'s file, the system's for `system`, else libpq's default
/// `~/.postgresql/root.crt`.
fn roots(root: Option<&str>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    if root == Some("system") {
        let found = rustls_native_certs::load_native_certs();
        store.add_parsable_certificates(found.certs);
        return match store.is_empty() {
            true => Err("sslrootcert=system: this system has no root certificates".into()),
            false => Ok(store),
        };
    }
    let default = std::env::var_os("HOME")
        .map(|home| std::path::Path::new(&home).join(".postgresql/root.crt"))
        .filter(|path| path.exists());
    let path = match (root, default) {
        (Some(path), _) => std::path::PathBuf::from(path),
        (None, Some(path)) => path,
        (None, None) => {
            return Err(
                "verify-ca and verify-full need the server's root certificate: add \
                        sslrootcert=<file> (or sslrootcert=system) to the URL"
                    .into(),
            );
        }
    };
    let unreadable = |e: &dyn std::fmt::Display| format!("sslrootcert {}: {e}", path.display());
    for cert in CertificateDer::pem_file_iter(&path).map_err(|e| unreadable(&e))? {
        store
            .add(cert.map_err(|e| unreadable(&e))?)
            .map_err(|e| unreadable(&e))?;
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
