//! Starting and stopping the server: PKI, kubeconfig, the store, the watch cache, bootstrap
//! objects, and HTTPS (ALPN h2 and http/1.1; plain HTTP/1.1 when a client offers no ALPN, as
//! kubectl's WebSocket upgrades do).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tug_store::{CompactionPolicy, Datastore};

use crate::pki::{Pki, PkiError};
use crate::{Api, User, bootstrap};

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    /// Where to listen; port 0 picks a free one.
    pub listen: SocketAddr,
    pub datastore: Datastore,
    pub compaction: CompactionPolicy,
    pub admission: crate::Admission,
    /// Where Service cluster IPs and node ports come from (`--service-cidr`,
    /// `--service-node-port-range`).
    pub service_ranges: crate::alloc::ServiceRanges,
}

impl ServerConfig {
    /// A server on a free loopback port with its SQLite file in `data_dir`, default
    /// compaction and admission: what tests and benchmarks start in-process.
    pub fn local(data_dir: &std::path::Path) -> ServerConfig {
        ServerConfig {
            data_dir: data_dir.to_path_buf(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            datastore: Datastore::Sqlite { path: data_dir.join("state.db") },
            compaction: CompactionPolicy::default(),
            admission: crate::Admission::default(),
            service_ranges: crate::alloc::ServiceRanges::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Store(#[from] tug_store::Error),
    #[error("cannot listen on {addr}: {source}. Is another server running there? Pick another address with --listen.")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A running server. Dropping it does not stop it; call [`RunningServer::stop`].
#[derive(Debug)]
pub struct RunningServer {
    pub addr: SocketAddr,
    pub url: String,
    pub kubeconfig: PathBuf,
    pub api: Arc<Api>,
    pub pki: Pki,
    /// Credential of the components running inside the server (never written to disk).
    internal_token: String,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// The API as an in-process service for components inside the server; wrap it in a
    /// `kube::Client` (`kube::Client::new(service, "default")`).
    pub fn local_service(&self) -> crate::local::LocalService {
        crate::local::LocalService::new(self.api.clone(), &self.internal_token)
    }

    /// Stops accepting, ends open watches, and waits for the accept loop to finish.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// The names the serving certificate covers: localhost, the listen address, and this host.
fn certificate_names(listen: &SocketAddr, kubernetes_service_ip: std::net::Ipv4Addr) -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        kubernetes_service_ip.to_string(),
    ];
    let ip = listen.ip();
    if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
        names.push(ip.to_string());
    }
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        let host = host.trim().to_string();
        if !host.is_empty() && !names.contains(&host) {
            names.push(host);
        }
    }
    names
}

fn tls_acceptor(pki: &Pki) -> Result<TlsAcceptor, StartError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pki.server_cert_pem.as_bytes())
        .chain(CertificateDer::pem_slice_iter(pki.ca_cert_pem.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|e| StartError::Tls(format!("serving certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes())
        .map_err(|e| StartError::Tls(format!("serving key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| StartError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Starts the API server: returns once it accepts connections.
pub async fn start(config: ServerConfig) -> Result<RunningServer, StartError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| StartError::Write { path: config.data_dir.clone(), source })?;
    // The datastore first: a damaged or locked one is the error to report, not a busy port.
    let store = tug_store::open(&config.datastore, config.compaction.clone()).await?;
    let listener =
        TcpListener::bind(config.listen).await.map_err(|source| StartError::Listen { addr: config.listen, source })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen { addr: config.listen, source })?;
    let pki = Pki::load_or_create(
        &config.data_dir,
        &certificate_names(&addr, config.service_ranges.cidr.kubernetes_service_ip()),
    )?;
    let host = if addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { addr.ip().to_string() };
    let url = format!("https://{host}:{}", addr.port());
    let kubeconfig = config.data_dir.join("kubeconfig.yaml");
    crate::pki::write_file(&kubeconfig, pki.admin_kubeconfig(&url).as_bytes(), 0o600)
        .map_err(|e| StartError::Tls(e.to_string()))?;

    let mut tokens = HashMap::new();
    tokens.insert(
        pki.admin_token.clone(),
        User { name: "admin".into(), groups: vec!["system:masters".into(), "system:authenticated".into()] },
    );
    tokens.insert(
        pki.node_token.clone(),
        User { name: "system:node".into(), groups: vec!["system:nodes".into(), "system:authenticated".into()] },
    );
    let internal_token = uuid::Uuid::new_v4().simple().to_string();
    tokens.insert(
        internal_token.clone(),
        User { name: "system:tug-server".into(), groups: vec!["system:masters".into(), "system:authenticated".into()] },
    );
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let api = Api::new(
        store,
        tokens,
        pki.ca_cert_pem.clone(),
        shutdown_rx.clone(),
        config.admission.clone(),
        config.service_ranges,
    )
    .await?;
    let kubelet_client = crate::proxy::KubeletClient::new(&pki.kubelet_client_cert_pem, &pki.kubelet_client_key_pem)
        .map_err(StartError::Tls)?;
    let _ = api.kubelet_client.set(kubelet_client);
    bootstrap::check_service_allocations(&api).await;
    bootstrap::ensure_defaults(&api, addr).await;
    bootstrap::spawn_namespace_finalizer(api.clone());
    bootstrap::spawn_kubernetes_endpoints(api.clone(), addr);
    crate::alloc::records::spawn_repair(api.clone(), crate::alloc::records::REPAIR_INTERVAL);

    let acceptor = tls_acceptor(&pki)?;
    let task = tokio::spawn(accept_loop(listener, acceptor, api.clone(), shutdown_rx));
    tracing::info!(%url, kubeconfig = %kubeconfig.display(), "API server listening");
    Ok(RunningServer { addr, url, kubeconfig, api, pki, internal_token, shutdown: shutdown_tx, task })
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, api: Arc<Api>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let api = api.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(api.handle(req.map(Body::new)).await) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder.http2().max_concurrent_streams(1000);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

/// Reads a kubeconfig's server URL (for tools and tests that only have the file).
pub fn kubeconfig_server(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| l.trim().strip_prefix("server: ").map(str::to_string))
}
