//! The key material a gateway serves, read from files laid out as Kubernetes mounts Secrets: an
//! SmCertificate's Secret (`tls.crt` the sign certificate and its chain, `tls.key`, and for
//! TLCP `enc.crt`/`enc.key`), a standard `kubernetes.io/tls` Secret, and a client CA bundle.

use std::path::{Path, PathBuf};

/// Where the files are.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The SmCertificate Secret's directory.
    pub sm: PathBuf,
    /// A standard (ECDSA or RSA) certificate Secret's directory, when standard TLS is served.
    pub standard: Option<PathBuf>,
    /// The CA bundle client certificates are verified against.
    pub client_ca: Option<PathBuf>,
}

/// The PEM text of every file, as read at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Material {
    pub sign_chain: String,
    pub sign_key: String,
    pub enc_cert: Option<String>,
    pub enc_key: Option<String>,
    pub standard_chain: Option<String>,
    pub standard_key: Option<String>,
    pub client_ca: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct ReadError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

fn read(path: &Path) -> Result<String, ReadError> {
    std::fs::read_to_string(path).map_err(|source| ReadError { path: path.to_path_buf(), source })
}

fn read_optional(path: &Path) -> Result<Option<String>, ReadError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ReadError { path: path.to_path_buf(), source }),
    }
}

impl Sources {
    /// Reads every file. An SmCertificate without an enc pair is read as such (TLCP then fails
    /// to build, naming the missing file).
    pub fn read(&self) -> Result<Material, ReadError> {
        let standard = match &self.standard {
            Some(dir) => (Some(read(&dir.join("tls.crt"))?), Some(read(&dir.join("tls.key"))?)),
            None => (None, None),
        };
        Ok(Material {
            sign_chain: read(&self.sm.join("tls.crt"))?,
            sign_key: read(&self.sm.join("tls.key"))?,
            enc_cert: read_optional(&self.sm.join("enc.crt"))?,
            enc_key: read_optional(&self.sm.join("enc.key"))?,
            standard_chain: standard.0,
            standard_key: standard.1,
            client_ca: self.client_ca.as_deref().map(read).transpose()?,
        })
    }
}
