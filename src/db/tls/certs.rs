//! The files TLS reads, as libpq does: root certificates (`sslrootcert`, `system`,
//! `~/.postgresql/root.crt`) and the client's certificate and key, checked before use.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// A client certificate chain and its private key.
pub(super) type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// The one client certificate, offered to every server that asks.
#[derive(Debug)]
pub(super) struct ClientCert(pub(super) Arc<CertifiedKey>);

impl ResolvesClientCert for ClientCert {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// `~/.postgresql/<name>`, libpq's default place for certificates and keys.
pub(super) fn in_home(name: &str) -> Option<PathBuf> {
    crate::settings::home().map(|home| Path::new(&home).join(".postgresql").join(name))
}

/// The client certificate and key: `sslcert` and `sslkey`, each defaulting as in libpq to
/// `~/.postgresql/postgresql.crt` and `.key` when that file exists. One without the other
/// is refused: the server would see no certificate and fail with a less useful message.
pub(super) fn client_identity(
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
pub(super) fn system_roots() -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    match store.is_empty() {
        true => Err("sslrootcert=system: this system has no root certificates".into()),
        false => Ok(store),
    }
}

/// The roots in a PEM file: `sslrootcert`'s, or `~/.postgresql/root.crt`.
pub(super) fn roots_from(path: &Path) -> Result<RootCertStore, String> {
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
