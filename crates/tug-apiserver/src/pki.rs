//! The cluster's certificates and credentials, created on first start and reused afterwards.
//!
//! Layout under the data directory:
//! - `tls/ca.crt`, `tls/ca.key` — the cluster CA (10 years). Clients trust it via kubeconfig.
//! - `tls/server.crt`, `tls/server.key` — the serving certificate (1 year), signed by the CA,
//!   for the names in `tls/server.sans`; re-issued (same CA) when the wanted names change or it
//!   is within 30 days of expiry.
//! - `tls/apiserver-kubelet-client.crt`, `.key` — the client certificate (1 year, re-issued
//!   like the serving one) the server presents to node agents when it proxies logs, exec,
//!   attach and port-forward; agents accept only this identity.
//! - `tokens/admin` — the admin bearer token written into `kubeconfig.yaml`.
//! - `node-token` — what agents present to join.
//!
//! Keys and tokens are written 0600. The CA is re-loaded from its key and a fixed subject, so no
//! certificate parser is needed to sign with it again.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const CA_COMMON_NAME: &str = "tugboat-ca";
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
const SERVER_VALIDITY: Duration = Duration::from_secs(365 * 86_400);
/// The identity agents require of the server's client certificate (Kubernetes' name for it).
pub const KUBELET_CLIENT_COMMON_NAME: &str = "kube-apiserver-kubelet-client";
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot {action} {path}: {source}. Check that tug may write the data directory.")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the cluster CA in {dir} is unusable ({reason}). Restore tls/ca.key from a backup; deleting tls/ makes a new CA that no existing client trusts."
    )]
    BadCa { dir: PathBuf, reason: String },
    #[error("cannot create a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Everything the server needs to serve TLS and hand out credentials.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_cert_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    /// What the server presents to node agents (`tls/apiserver-kubelet-client.{crt,key}`).
    pub kubelet_client_cert_pem: String,
    pub kubelet_client_key_pem: String,
    pub admin_token: String,
    pub node_token: String,
}

impl Pki {
    /// Loads the PKI under `data_dir`, creating what is missing. `names` are the DNS names and
    /// IP addresses the serving certificate must cover.
    pub fn load_or_create(data_dir: &Path, names: &[String]) -> Result<Pki, PkiError> {
        let tls = data_dir.join("tls");
        create_dir(&tls)?;
        let (ca_cert_pem, ca_key) = load_or_create_ca(&tls)?;
        let (server_cert_pem, server_key_pem) = load_or_issue(&tls, &ca_key, &Leaf::server(names))?;
        let (kubelet_client_cert_pem, kubelet_client_key_pem) = load_or_issue(&tls, &ca_key, &Leaf::kubelet_client())?;
        create_dir(&data_dir.join("tokens"))?;
        let admin_token = load_or_create_secret(&data_dir.join("tokens/admin"))?;
        let node_token = load_or_create_secret(&data_dir.join("node-token"))?;
        Ok(Pki {
            ca_cert_pem,
            server_cert_pem,
            server_key_pem,
            kubelet_client_cert_pem,
            kubelet_client_key_pem,
            admin_token,
            node_token,
        })
    }

    /// A kubeconfig for the admin user against `server_url`.
    pub fn admin_kubeconfig(&self, server_url: &str) -> String {
        let ca_b64 = base64(self.ca_cert_pem.as_bytes());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: tugboat\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {ca_b64}\nusers:\n- name: admin\n  user:\n    token: {}\ncontexts:\n- name: tugboat\n  context:\n    cluster: tugboat\n    user: admin\n    namespace: default\ncurrent-context: tugboat\n",
            self.admin_token
        )
    }
}

fn ca_params() -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

fn load_or_create_ca(tls: &Path) -> Result<(String, KeyPair), PkiError> {
    let (cert_path, key_path) = (tls.join("ca.crt"), tls.join("ca.key"));
    match (read_opt(&cert_path)?, read_opt(&key_path)?) {
        (Some(cert), Some(key)) => {
            let key = KeyPair::from_pem(&key)
                .map_err(|e| PkiError::BadCa { dir: tls.to_path_buf(), reason: format!("ca.key: {e}") })?;
            Ok((cert, key))
        }
        (None, None) => {
            let key = KeyPair::generate()?;
            let mut params = ca_params()?;
            let now = SystemTime::now();
            params.not_before = (now - Duration::from_secs(3600)).into();
            params.not_after = (now + CA_VALIDITY).into();
            let cert = params.self_signed(&key)?.pem();
            write_file(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
            write_file(&cert_path, cert.as_bytes(), 0o644)?;
            Ok((cert, key))
        }
        _ => Err(PkiError::BadCa { dir: tls.to_path_buf(), reason: "one of ca.crt and ca.key is missing".into() }),
    }
}

/// A certificate the CA issues: file stem, subject, names and purpose.
struct Leaf {
    stem: &'static str,
    common_name: &'static str,
    organization: Option<&'static str>,
    names: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
}

impl Leaf {
    fn server(names: &[String]) -> Leaf {
        Leaf {
            stem: "server",
            common_name: "tugboat-apiserver",
            organization: None,
            names: names.to_vec(),
            usage: ExtendedKeyUsagePurpose::ServerAuth,
        }
    }

    /// Kubernetes' `apiserver-kubelet-client`: CN kube-apiserver-kubelet-client, O system:masters.
    fn kubelet_client() -> Leaf {
        Leaf {
            stem: "apiserver-kubelet-client",
            common_name: KUBELET_CLIENT_COMMON_NAME,
            organization: Some("system:masters"),
            names: Vec::new(),
            usage: ExtendedKeyUsagePurpose::ClientAuth,
        }
    }
}

/// Loads `tls/<stem>.{crt,key}`, issuing it again when its names changed or it nears expiry.
fn load_or_issue(tls: &Path, ca_key: &KeyPair, leaf: &Leaf) -> Result<(String, String), PkiError> {
    let file = |ext: &str| tls.join(format!("{}.{ext}", leaf.stem));
    let (cert_path, key_path, sans_path, expiry_path) = (file("crt"), file("key"), file("sans"), file("expires"));
    let wanted = leaf.names.join("\n");
    let expires: Option<u64> = read_opt(&expiry_path)?.and_then(|s| s.trim().parse().ok());
    let fresh =
        expires.is_some_and(|at| SystemTime::UNIX_EPOCH + Duration::from_secs(at) > SystemTime::now() + RENEW_BEFORE);
    if let (Some(cert), Some(key), Some(sans)) = (read_opt(&cert_path)?, read_opt(&key_path)?, read_opt(&sans_path)?)
        && sans == wanted
        && fresh
    {
        return Ok((cert, key));
    }
    let mut params = CertificateParams::new(leaf.names.clone())?;
    params.distinguished_name.push(DnType::CommonName, leaf.common_name);
    if let Some(organization) = leaf.organization {
        params.distinguished_name.push(DnType::OrganizationName, organization);
    }
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![leaf.usage.clone()];
    let now = SystemTime::now();
    let not_after = now + SERVER_VALIDITY;
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = not_after.into();
    let key = KeyPair::generate()?;
    let issuer = Issuer::new(ca_params()?, ca_key);
    let cert = params.signed_by(&key, &issuer)?.pem();
    let key_pem = key.serialize_pem();
    write_file(&key_path, key_pem.as_bytes(), 0o600)?;
    write_file(&cert_path, cert.as_bytes(), 0o644)?;
    write_file(&sans_path, wanted.as_bytes(), 0o644)?;
    let expiry = not_after.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    write_file(&expiry_path, expiry.to_string().as_bytes(), 0o644)?;
    Ok((cert, key_pem))
}

fn load_or_create_secret(path: &Path) -> Result<String, PkiError> {
    if let Some(existing) = read_opt(path)? {
        let token = existing.trim().to_string();
        if !token.is_empty() {
            return Ok(token);
        }
    }
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).map_err(|source| PkiError::Io {
        action: "read",
        path: "/dev/urandom".into(),
        source,
    })?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_file(path, format!("{token}\n").as_bytes(), 0o600)?;
    Ok(token)
}

fn create_dir(path: &Path) -> Result<(), PkiError> {
    std::fs::create_dir_all(path).map_err(|source| PkiError::Io { action: "create", path: path.to_path_buf(), source })
}

fn read_opt(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io { action: "read", path: path.to_path_buf(), source }),
    }
}

/// Writes through a temporary file and a rename, so a crash never leaves half a key.
pub(crate) fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let tmp = path.with_extension("tmp");
    let io = |source| PkiError::Io { action: "write", path: path.to_path_buf(), source };
    let mut f =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp).map_err(io)?;
    f.write_all(contents).and_then(|_| f.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Standard base64 with padding (kubeconfig's certificate data, Secrets' `data`).
pub(crate) fn base64(bytes: &[u8]) -> String {
    use ::base64::Engine as _;
    ::base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn names() -> Vec<String> {
        vec!["localhost".into(), "127.0.0.1".into()]
    }

    /// Verifies with openssl, an independent implementation: chain and names.
    fn openssl_verifies(dir: &Path, host: &str) -> bool {
        Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(dir.join("tls/ca.crt"))
            .args(if host.parse::<std::net::IpAddr>().is_ok() {
                ["-verify_ip", host]
            } else {
                ["-verify_hostname", host]
            })
            .arg(dir.join("tls/server.crt"))
            .output()
            .map(|o| o.status.success())
            .expect("openssl is installed")
    }

    #[test]
    fn first_start_creates_a_ca_signed_serving_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &names()).unwrap();
        assert!(pki.ca_cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(openssl_verifies(dir.path(), "127.0.0.1"));
        assert!(openssl_verifies(dir.path(), "localhost"));
        assert!(!openssl_verifies(dir.path(), "example.com"), "only the wanted names are covered");
        assert_eq!(pki.admin_token.len(), 48);
        assert_ne!(pki.admin_token, pki.node_token);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("tls/ca.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the CA key is private");
    }

    #[test]
    fn restart_reuses_everything_and_new_names_keep_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let first = Pki::load_or_create(dir.path(), &names()).unwrap();
        let again = Pki::load_or_create(dir.path(), &names()).unwrap();
        assert_eq!(
            (&first.ca_cert_pem, &first.server_cert_pem, &first.admin_token, &first.node_token),
            (&again.ca_cert_pem, &again.server_cert_pem, &again.admin_token, &again.node_token)
        );
        let mut more = names();
        more.push("10.1.2.3".into());
        let reissued = Pki::load_or_create(dir.path(), &more).unwrap();
        assert_eq!(reissued.ca_cert_pem, first.ca_cert_pem, "the CA clients trust stays");
        assert_ne!(reissued.server_cert_pem, first.server_cert_pem);
        assert!(openssl_verifies(dir.path(), "10.1.2.3"), "the re-issued certificate chains to the same CA");
    }

    #[test]
    fn the_kubelet_client_certificate_is_a_ca_signed_client_identity() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &names()).unwrap();
        let cert = dir.path().join("tls/apiserver-kubelet-client.crt");
        let verify = |purpose: &str| {
            Command::new("openssl")
                .args(["verify", "-purpose", purpose, "-CAfile"])
                .arg(dir.path().join("tls/ca.crt"))
                .arg(&cert)
                .output()
                .map(|o| o.status.success())
                .expect("openssl is installed")
        };
        assert!(verify("sslclient"), "chains to the CA as a client certificate");
        assert!(!verify("sslserver"), "it is not a serving certificate");
        let subject = Command::new("openssl").args(["x509", "-noout", "-subject", "-in"]).arg(&cert).output().unwrap();
        let subject = String::from_utf8_lossy(&subject.stdout).to_string();
        assert!(subject.contains("CN = kube-apiserver-kubelet-client"), "{subject}");
        assert!(subject.contains("O = system:masters"), "{subject}");
        let again = Pki::load_or_create(dir.path(), &names()).unwrap();
        assert_eq!(again.kubelet_client_cert_pem, pki.kubelet_client_cert_pem, "reused across restarts");
        assert!(pki.kubelet_client_key_pem.contains("PRIVATE KEY"));
    }

    #[test]
    fn a_half_missing_ca_is_an_error_not_a_silent_new_ca() {
        let dir = tempfile::tempdir().unwrap();
        Pki::load_or_create(dir.path(), &names()).unwrap();
        std::fs::remove_file(dir.path().join("tls/ca.key")).unwrap();
        let err = Pki::load_or_create(dir.path(), &names()).unwrap_err().to_string();
        assert!(err.contains("ca.key is missing") || err.contains("one of ca.crt and ca.key"), "{err}");
        assert!(err.contains("Restore tls/ca.key"), "{err}");
    }

    #[test]
    fn kubeconfig_embeds_the_ca_and_token() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &names()).unwrap();
        let cfg = pki.admin_kubeconfig("https://127.0.0.1:6443");
        assert!(cfg.contains("server: https://127.0.0.1:6443"));
        assert!(cfg.contains(&format!("token: {}", pki.admin_token)));
        assert!(cfg.contains(&format!("certificate-authority-data: {}", base64(pki.ca_cert_pem.as_bytes()))));
    }

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        for (input, want) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }
}
