//! How a component outside `tug server` joins a cluster: a `kube::Client` from the server's URL,
//! the node token and the cluster CA. `tug agent`, `tug sim` and the benchmarks that run an
//! agent all join this way, so it lives below all of them (no component imports another's).

mod pem;

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("cannot read the {what} {path}: {source}")]
    Read { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("the token file {0} is empty")]
    EmptyToken(PathBuf),
    #[error("the CA file {path} holds no usable certificate: {reason}")]
    BadCa { path: PathBuf, reason: String },
    #[error("the server URL {url:?} is invalid: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot build the API client: {0}")]
    Client(#[source] kube::Error),
}

/// A client from `--server URL --token-file F` and the cluster CA: the bearer token is the
/// file's content (trimmed), the CA a PEM file (the server writes it to `DATA/tls/ca.crt`).
/// Call it inside a Tokio runtime (the client starts a task).
pub fn client_from_token(server: &str, token_file: &Path, ca_file: &Path) -> Result<kube::Client, JoinError> {
    let token = std::fs::read_to_string(token_file).map_err(|source| JoinError::Read {
        what: "token file",
        path: token_file.to_path_buf(),
        source,
    })?;
    let token = token.trim();
    if token.is_empty() {
        return Err(JoinError::EmptyToken(token_file.to_path_buf()));
    }
    let ca = std::fs::read_to_string(ca_file).map_err(|source| JoinError::Read {
        what: "CA file",
        path: ca_file.to_path_buf(),
        source,
    })?;
    let roots = pem::certificates(&ca).map_err(|reason| JoinError::BadCa { path: ca_file.to_path_buf(), reason })?;
    let url = server.parse().map_err(|e| JoinError::BadUrl { url: server.into(), reason: format!("{e}") })?;
    let mut config = kube::Config::new(url);
    config.root_cert = Some(roots);
    config.auth_info.token = Some(token.to_string().into());
    kube::Client::try_from(config).map_err(JoinError::Client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_from_token_reports_bad_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("token");
        let ca = dir.path().join("ca.crt");
        let error_of = |token: &Path, ca: &Path| match client_from_token("https://127.0.0.1:1", token, ca) {
            Ok(_) => panic!("a client from bad files"),
            Err(e) => e,
        };
        let missing = error_of(&token, &ca);
        assert!(missing.to_string().contains("token file"), "{missing}");
        std::fs::write(&token, " \n").expect("write");
        let empty = error_of(&token, &ca);
        assert!(matches!(empty, JoinError::EmptyToken(_)), "{empty}");
        std::fs::write(&token, "secret\n").expect("write");
        std::fs::write(&ca, "not a certificate").expect("write");
        let bad_ca = error_of(&token, &ca);
        assert!(matches!(bad_ca, JoinError::BadCa { .. }), "{bad_ca}");
    }
}
