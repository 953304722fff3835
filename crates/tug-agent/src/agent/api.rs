//! The agent's HTTPS API, the kubelet's streaming endpoints the API server proxies to:
//!
//! - `GET /containerLogs/{ns}/{pod}/{container}?follow&previous&tailLines&sinceSeconds&sinceTime&timestamps&limitBytes`
//! - `GET|POST /exec/{ns}/{pod}/{container}?command=…&stdin&stdout&stderr&tty`
//! - `GET|POST /attach/{ns}/{pod}/{container}?stdin&stdout&stderr&tty`
//! - `GET|POST /portForward/{ns}/{pod}`
//!
//! Exec, attach and port-forward ask the runtime (CRI `Exec`, `Attach`, `PortForward`) for a URL
//! on its streaming server. Then, by the caller's upgrade:
//!
//! - WebSocket offering `v5.channel.k8s.io` (exec, attach; kubectl 1.30+ tries it first): the
//!   agent answers the WebSocket itself and translates to SPDY `v4.channel.k8s.io` on the
//!   runtime's URL (`translate::exec`), as Kubernetes' API server's StreamTranslator does.
//! - WebSocket offering `SPDY/3.1+portforward.k8s.io` (port-forward; kubectl 1.31+): the agent
//!   answers it and copies the tunnelled SPDY bytes to and from a plain SPDY upgrade of the
//!   runtime's URL (`translate::tunnel`).
//! - Anything else (SPDY/3.1, WebSocket `v4.channel.k8s.io` and older): relayed to the runtime
//!   unchanged; containerd answers the upgrade itself, and once it switched protocols the agent
//!   copies bytes both ways, as the kubelet's proxying mode does.
//!
//! Containerd 1.6 refuses the first two itself, so without the translation kubectl would spend
//! a refused round trip and fall back to SPDY, and clients without a fallback would fail.
//!
//! Mutual TLS: the agent serves a certificate it makes for itself and accepts only clients
//! whose certificate chains to the cluster CA and names the API server's client identity
//! (CN `kube-apiserver-kubelet-client`); anything else fails the handshake or gets 401.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tug_cri::v1::{
    AttachRequest, Container, ContainerFilter, ContainerState, ExecRequest, ListContainersRequest,
    ListPodSandboxRequest, PodSandboxFilter, PodSandboxState, PodSandboxStateValue, PortForwardRequest,
};
use tug_k8s::pods::PodRef;

use super::AgentError;
use super::logs::{self, LogOptions, LogSource};
use super::spec::{CONTAINER_NAME_LABEL, NODE_LABEL, POD_NAME_LABEL, POD_NAMESPACE_LABEL, POD_UID_LABEL};
use super::translate::{self, StreamKind};

/// The client identity the agent serves: the API server's kubelet-client certificate.
pub const API_SERVER_CLIENT_NAME: &str = "kube-apiserver-kubelet-client";

type Body = BoxBody<Bytes, std::io::Error>;

/// What the API needs of the agent.
#[derive(Debug, Clone)]
pub struct AgentApi {
    pub cri: tug_cri::Clients,
    /// The node name: only this agent's containers are served.
    pub node: String,
    /// `<pods_dir>/<ns>_<name>_<uid>/<container>/<attempt>.log`.
    pub pods_dir: PathBuf,
}

/// What a request asks for: the pure routing of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Healthz,
    Logs { namespace: String, pod: String, container: String },
    Exec { namespace: String, pod: String, container: String },
    Attach { namespace: String, pod: String, container: String },
    PortForward { namespace: String, pod: String },
}

/// Routes a request path; `None` is 404.
pub fn route(path: &str) -> Option<Endpoint> {
    let segments: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(percent_decode).collect();
    let owned = |s: &String| s.clone();
    match segments.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["healthz"] => Some(Endpoint::Healthz),
        ["containerLogs", _, _, _] => Some(Endpoint::Logs {
            namespace: owned(&segments[1]),
            pod: owned(&segments[2]),
            container: owned(&segments[3]),
        }),
        ["exec", _, _, _] => Some(Endpoint::Exec {
            namespace: owned(&segments[1]),
            pod: owned(&segments[2]),
            container: owned(&segments[3]),
        }),
        ["attach", _, _, _] => Some(Endpoint::Attach {
            namespace: owned(&segments[1]),
            pod: owned(&segments[2]),
            container: owned(&segments[3]),
        }),
        ["portForward", _, _] => {
            Some(Endpoint::PortForward { namespace: owned(&segments[1]), pod: owned(&segments[2]) })
        }
        _ => None,
    }
}

/// `%XX` and `+` decoded (invalid escapes are kept as they are).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (bytes.get(i + 1).and_then(|b| hex(*b)), bytes.get(i + 2).and_then(|b| hex(*b))) {
                (Some(high), Some(low)) => {
                    // Two hex digits are at most 255.
                    out.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query as decoded name/value pairs, in order (`command` repeats).
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => (percent_decode(name), percent_decode(value)),
            None => (percent_decode(pair), String::new()),
        })
        .collect()
}

/// Which streams an exec or attach wants, and its command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamOptions {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

fn truthy(value: &str) -> bool {
    matches!(value, "" | "1" | "true" | "True")
}

impl StreamOptions {
    /// The kubelet protocol's streams for these options.
    pub fn streams(&self) -> Vec<StreamKind> {
        translate::streams_for(self.stdin, self.stdout, self.stderr, self.tty)
    }

    /// Reads the query as the kubelet does: a TTY merges stderr into stdout, and at least one
    /// stream is required.
    pub fn from_query(pairs: &[(String, String)], needs_command: bool) -> Result<StreamOptions, String> {
        let mut options = StreamOptions::default();
        for (name, value) in pairs {
            match name.as_str() {
                "command" => options.command.push(value.clone()),
                "input" | "stdin" => options.stdin = truthy(value),
                "output" | "stdout" => options.stdout = truthy(value),
                "error" | "stderr" => options.stderr = truthy(value),
                "tty" => options.tty = truthy(value),
                _ => {}
            }
        }
        if options.tty {
            options.stderr = false;
        }
        if !(options.stdin || options.stdout || options.stderr) {
            return Err("you must specify at least 1 of stdin, stdout, stderr".into());
        }
        if needs_command && options.command.is_empty() {
            return Err("you must specify at least one command for the container".into());
        }
        Ok(options)
    }
}

/// Whether a DER certificate's subject names `common_name` (CN attribute, UTF8String or
/// PrintableString). The chain was verified by the handshake, so the CA vouches for the name.
pub fn certificate_names(der: &[u8], common_name: &str) -> bool {
    const CN_OID: [u8; 5] = [0x06, 0x03, 0x55, 0x04, 0x03];
    let wanted = common_name.as_bytes();
    der.windows(CN_OID.len() + 2 + wanted.len()).any(|w| {
        w[..5] == CN_OID && matches!(w[5], 0x0c | 0x13) && usize::from(w[6]) == wanted.len() && &w[7..] == wanted
    })
}

/// The agent's TLS: a self-made serving certificate for the node's names, and client
/// certificates required and verified against the cluster CA.
pub fn tls_config(
    ca_cert_pem: &str,
    node_name: &str,
    node_ip: IpAddr,
) -> Result<Arc<rustls::ServerConfig>, AgentError> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let invalid = |what: &str, e: &dyn std::fmt::Display| AgentError::Invalid(format!("agent API TLS: {what}: {e}"));
    let names = vec![node_name.to_string(), node_ip.to_string(), "localhost".into(), "127.0.0.1".into()];
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| invalid("certificate names", &e))?;
    params.distinguished_name.push(rcgen::DnType::CommonName, format!("{node_name}@tug-agent"));
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().map_err(|e| invalid("key", &e))?;
    let cert = params.self_signed(&key).map_err(|e| invalid("certificate", &e))?;
    let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).map_err(|e| invalid("key", &e))?;

    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_cert_pem.as_bytes()) {
        roots.add(ca.map_err(|e| invalid("CA certificate", &e))?).map_err(|e| invalid("CA certificate", &e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| invalid("client verifier", &e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("protocols", &e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert.der().clone()], key)
        .map_err(|e| invalid("serving certificate", &e))?;
    // HTTP/1.1 only: upgrades (exec, attach, port-forward) are HTTP/1.1 requests.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Binds the API's port on all addresses (`0` picks a free one).
pub async fn bind(port: u16) -> Result<TcpListener, AgentError> {
    let addr = SocketAddr::from(([0, 0, 0, 0], port));
    TcpListener::bind(addr).await.map_err(|source| AgentError::Io {
        what: "listening for the agent API on",
        path: PathBuf::from(addr.to_string()),
        source,
    })
}

/// Serves connections until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    api: AgentApi,
    shutdown: impl Future<Output = ()> + Send,
) {
    let acceptor = TlsAcceptor::from(tls);
    let api = Arc::new(api);
    let accept = async {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "agent API accept failed");
                    continue;
                }
            };
            let (acceptor, api) = (acceptor.clone(), api.clone());
            tokio::spawn(async move {
                let tls = match acceptor.accept(tcp).await {
                    Ok(tls) => tls,
                    Err(error) => {
                        tracing::debug!(%peer, %error, "agent API TLS handshake refused");
                        return;
                    }
                };
                let authorized = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .is_some_and(|leaf| certificate_names(leaf, API_SERVER_CLIENT_NAME));
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let api = api.clone();
                    async move {
                        if !authorized {
                            return Ok::<_, Infallible>(text(StatusCode::UNAUTHORIZED, "Unauthorized"));
                        }
                        Ok(api.handle(req).await)
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                if let Err(error) = builder.serve_connection_with_upgrades(TokioIo::new(tls), service).await {
                    tracing::debug!(%peer, %error, "agent API connection ended");
                }
            });
        }
    };
    tokio::select! {
        _ = accept => {}
        _ = shutdown => {}
    }
}

fn text(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let body = Full::new(Bytes::from(message.into())).map_err(|never| match never {}).boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// An error as the agent answers it: the status and a message for the user.
#[derive(Debug)]
struct Failure(StatusCode, String);

fn cri_failure(what: &str) -> impl FnOnce(tug_cri::Status) -> Failure {
    move |status| Failure(StatusCode::INTERNAL_SERVER_ERROR, format!("{what}: {}", status.message()))
}

impl AgentApi {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        match self.answer(req).await {
            Ok(response) => response,
            Err(Failure(status, message)) => text(status, message),
        }
    }

    async fn answer(&self, req: Request<Incoming>) -> Result<Response<Body>, Failure> {
        let endpoint =
            route(req.uri().path()).ok_or_else(|| Failure(StatusCode::NOT_FOUND, "404 page not found".into()))?;
        let pairs = query_pairs(req.uri().query());
        let get = req.method() == Method::GET;
        // kubectl POSTs exec and attach; other clients GET them.
        let streaming = get || req.method() == Method::POST;
        let bad_request = |message| Failure(StatusCode::BAD_REQUEST, message);
        match endpoint {
            Endpoint::Healthz => Ok(text(StatusCode::OK, "ok")),
            Endpoint::Logs { namespace, pod, container } if get => {
                self.logs(&namespace, &pod, &container, &pairs).await
            }
            Endpoint::Exec { namespace, pod, container } if streaming => {
                let options = StreamOptions::from_query(&pairs, true).map_err(bad_request)?;
                let streams = options.streams();
                let url = self.stream_url(&namespace, &pod, &container, options, false).await?;
                stream(&url, req, streams).await
            }
            Endpoint::Attach { namespace, pod, container } if streaming => {
                let options = StreamOptions::from_query(&pairs, false).map_err(bad_request)?;
                let streams = options.streams();
                let url = self.stream_url(&namespace, &pod, &container, options, true).await?;
                stream(&url, req, streams).await
            }
            Endpoint::PortForward { namespace, pod } if streaming => {
                let url = self.port_forward_url(&namespace, &pod).await?;
                match translate::takeover(req.headers(), true) {
                    Some(protocol) => {
                        let answer = websocket_answer(&req, protocol)?;
                        let runtime = spdy_to_runtime(&url, translate::PORT_FORWARD_PROTOCOL).await?;
                        Ok(accept_websocket(req, answer, |websocket| translate::tunnel(websocket, runtime)))
                    }
                    None => relay(&url, req).await,
                }
            }
            _ => Err(Failure(StatusCode::METHOD_NOT_ALLOWED, format!("{} is not allowed here", req.method()))),
        }
    }

    fn labels(&self, namespace: &str, pod: &str) -> HashMap<String, String> {
        [(POD_NAMESPACE_LABEL, namespace), (POD_NAME_LABEL, pod), (NODE_LABEL, self.node.as_str())]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The pod's containers of that name, newest attempt first.
    async fn containers(&self, namespace: &str, pod: &str, container: &str) -> Result<Vec<Container>, Failure> {
        let mut labels = self.labels(namespace, pod);
        labels.insert(CONTAINER_NAME_LABEL.into(), container.into());
        let filter = ContainerFilter { label_selector: labels, ..ContainerFilter::default() };
        let mut containers = self
            .cri
            .runtime
            .clone()
            .list_containers(ListContainersRequest { filter: Some(filter) })
            .await
            .map_err(cri_failure("listing containers"))?
            .into_inner()
            .containers;
        containers.sort_by_key(|c| std::cmp::Reverse((c.created_at, c.metadata.as_ref().map_or(0, |m| m.attempt))));
        Ok(containers)
    }

    async fn logs(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        pairs: &[(String, String)],
    ) -> Result<Response<Body>, Failure> {
        let options = LogOptions::from_query(pairs).map_err(|m| Failure(StatusCode::BAD_REQUEST, m))?;
        let containers = self.containers(namespace, pod, container).await?;
        let Some(newest) = containers.first() else {
            return Err(Failure(
                StatusCode::NOT_FOUND,
                format!("container {container:?} in pod {pod:?} is not available (no such container on this node)"),
            ));
        };
        let uid = newest.labels.get(POD_UID_LABEL).cloned().unwrap_or_default();
        let current = newest.metadata.as_ref().map_or(0, |m| m.attempt);
        let pod_ref = PodRef { uid, name: pod.into(), namespace: namespace.into(), resource_version: None };
        let container_dir = self.pods_dir.join(logs::pod_log_dir_name(&pod_ref)).join(container);
        let attempt = if options.previous {
            let previous = current.checked_sub(1).filter(|a| logs::attempt_file(&container_dir, *a).exists());
            previous.ok_or_else(|| {
                Failure(
                    StatusCode::BAD_REQUEST,
                    format!("previous terminated container {container:?} in pod {pod:?} not found"),
                )
            })?
        } else {
            current
        };
        if !logs::attempt_file(&container_dir, attempt).exists() {
            return Err(Failure(
                StatusCode::NOT_FOUND,
                format!("no log file for container {container:?} in pod {pod:?} (attempt {attempt})"),
            ));
        }
        let (sender, mut receiver) = mpsc::channel(64);
        tokio::spawn(logs::stream(LogSource { container_dir, attempt }, options, sender));
        let frames = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data))));
        let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
        response.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
        Ok(response)
    }

    /// The runtime's streaming URL for an exec (`attach` false) or attach of the running container.
    async fn stream_url(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        options: StreamOptions,
        attach: bool,
    ) -> Result<String, Failure> {
        let running = self
            .containers(namespace, pod, container)
            .await?
            .into_iter()
            .find(|c| c.state == ContainerState::ContainerRunning as i32)
            .ok_or_else(|| {
                Failure(StatusCode::BAD_REQUEST, format!("container {container} is not running in pod {pod}"))
            })?;
        let mut runtime = self.cri.runtime.clone();
        let StreamOptions { command, stdin, stdout, stderr, tty } = options;
        let container_id = running.id;
        let url = if attach {
            let request = AttachRequest { container_id, stdin, tty, stdout, stderr };
            runtime.attach(request).await.map_err(cri_failure("CRI Attach"))?.into_inner().url
        } else {
            let request = ExecRequest { container_id, cmd: command, tty, stdin, stdout, stderr };
            runtime.exec(request).await.map_err(cri_failure("CRI Exec"))?.into_inner().url
        };
        Ok(url)
    }

    async fn port_forward_url(&self, namespace: &str, pod: &str) -> Result<String, Failure> {
        let filter = PodSandboxFilter {
            state: Some(PodSandboxStateValue { state: PodSandboxState::SandboxReady as i32 }),
            label_selector: self.labels(namespace, pod),
            ..PodSandboxFilter::default()
        };
        let sandbox = self
            .cri
            .runtime
            .clone()
            .list_pod_sandbox(ListPodSandboxRequest { filter: Some(filter) })
            .await
            .map_err(cri_failure("listing sandboxes"))?
            .into_inner()
            .items
            .into_iter()
            .max_by_key(|s| s.created_at)
            .ok_or_else(|| Failure(StatusCode::NOT_FOUND, format!("pod {namespace}/{pod} has no running sandbox")))?;
        let request = PortForwardRequest { pod_sandbox_id: sandbox.id, port: Vec::new() };
        Ok(self
            .cri
            .runtime
            .clone()
            .port_forward(request)
            .await
            .map_err(cri_failure("CRI PortForward"))?
            .into_inner()
            .url)
    }
}

/// Serves an exec or attach on the runtime's streaming `url`: a v5 WebSocket is translated to
/// SPDY by the agent, anything else is relayed.
async fn stream(url: &str, req: Request<Incoming>, streams: Vec<StreamKind>) -> Result<Response<Body>, Failure> {
    match translate::takeover(req.headers(), false) {
        Some(protocol) => {
            let answer = websocket_answer(&req, protocol)?;
            let runtime = spdy_to_runtime(url, translate::V4_CHANNEL_PROTOCOL).await?;
            Ok(accept_websocket(req, answer, |websocket| translate::exec(websocket, runtime, streams)))
        }
        None => relay(url, req).await,
    }
}

/// The runtime's streaming connection after a SPDY upgrade; its refusal is the caller's answer.
async fn spdy_to_runtime(url: &str, protocol: &str) -> Result<TokioIo<Upgraded>, Failure> {
    let upgraded =
        translate::spdy_upgrade(url, protocol).await.map_err(|(status, message)| Failure(status, message))?;
    Ok(TokioIo::new(upgraded))
}

/// The headers accepting the caller's WebSocket with `protocol`; checked before the runtime
/// is asked for anything.
fn websocket_answer(req: &Request<Incoming>, protocol: &'static str) -> Result<http::HeaderMap, Failure> {
    translate::accept_headers(req.headers(), protocol).map_err(|m| Failure(StatusCode::BAD_REQUEST, m))
}

/// Switches the caller's connection to the WebSocket `answer` accepts and serves it with
/// `serve` once switched.
fn accept_websocket<F, Fut>(mut req: Request<Incoming>, answer: http::HeaderMap, serve: F) -> Response<Body>
where
    F: FnOnce(WebSocketStream<TokioIo<Upgraded>>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let caller = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match caller.await {
            Ok(upgraded) => {
                let websocket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
                serve(websocket).await;
            }
            Err(error) => tracing::debug!(%error, "WebSocket upgrade failed"),
        }
    });
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *response.headers_mut() = answer;
    response
}

/// Headers that belong to the caller's hop, not to the runtime's streaming server.
fn forwarded(name: &header::HeaderName) -> bool {
    ![header::HOST, header::AUTHORIZATION, header::CONTENT_LENGTH, header::TRANSFER_ENCODING].contains(name)
}

/// Sends the caller's (upgrade) request to the runtime's streaming `url` and, when the runtime
/// switches protocols, answers the caller the same and copies bytes both ways; otherwise
/// returns the runtime's refusal.
async fn relay(url: &str, mut req: Request<Incoming>) -> Result<Response<Body>, Failure> {
    let failed = |what: &str, e: &dyn std::fmt::Display| Failure(StatusCode::BAD_GATEWAY, format!("{what}: {e}"));
    let uri: http::Uri = url.parse().map_err(|e| failed("runtime streaming URL", &e))?;
    let authority = uri.authority().ok_or_else(|| failed("runtime streaming URL", &url))?.clone();
    let address = format!("{}:{}", authority.host(), authority.port_u16().unwrap_or(80));
    let tcp =
        TcpStream::connect(&address).await.map_err(|e| failed("connecting to the runtime's streaming server", &e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| failed("runtime streaming server", &e))?;
    tokio::spawn(connection.with_upgrades());
    let mut upstream = Request::builder()
        .method(req.method().clone())
        .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(header::HOST, authority.as_str());
    for (name, value) in req.headers().iter().filter(|(name, _)| forwarded(name)) {
        upstream = upstream.header(name, value);
    }
    let upstream = upstream.body(Empty::<Bytes>::new()).map_err(|e| failed("relayed request", &e))?;
    let mut answer = sender.send_request(upstream).await.map_err(|e| failed("runtime streaming server", &e))?;
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = answer.status();
        let body = answer.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        return Err(Failure(status, String::from_utf8_lossy(&body).trim().to_string()));
    }
    let (caller, runtime) = (hyper::upgrade::on(&mut req), hyper::upgrade::on(&mut answer));
    tokio::spawn(async move {
        match tokio::try_join!(caller, runtime) {
            Ok((caller, runtime)) => {
                let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(caller), &mut TokioIo::new(runtime)).await;
            }
            Err(error) => tracing::debug!(%error, "stream upgrade failed"),
        }
    });
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *response.headers_mut() = answer.headers().clone();
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_to_the_kubelet_endpoints() {
        let logs = |c: &str| Endpoint::Logs { namespace: "ns".into(), pod: "p".into(), container: c.into() };
        let cases = [
            ("/healthz", Some(Endpoint::Healthz)),
            ("/containerLogs/ns/p/c", Some(logs("c"))),
            ("/containerLogs/ns/p/a%2Db", Some(logs("a-b"))),
            ("/exec/ns/p/c", Some(Endpoint::Exec { namespace: "ns".into(), pod: "p".into(), container: "c".into() })),
            (
                "/attach/ns/p/c",
                Some(Endpoint::Attach { namespace: "ns".into(), pod: "p".into(), container: "c".into() }),
            ),
            ("/portForward/ns/p", Some(Endpoint::PortForward { namespace: "ns".into(), pod: "p".into() })),
            ("/exec/ns/p", None),
            ("/pods", None),
        ];
        for (path, want) in cases {
            assert_eq!(route(path), want, "{path}");
        }
    }

    #[test]
    fn queries_decode_and_streams_follow_the_kubelet_rules() {
        let pairs =
            query_pairs(Some("command=sh&command=-c&command=echo%20a+b%25&stdin=true&stdout=1&tty=true&stderr=true"));
        let options = StreamOptions::from_query(&pairs, true).expect("valid");
        assert_eq!(
            options,
            StreamOptions {
                command: vec!["sh".into(), "-c".into(), "echo a b%".into()],
                stdin: true,
                stdout: true,
                stderr: false,
                tty: true
            },
            "a TTY merges stderr into stdout"
        );
        assert_eq!(percent_decode("100%"), "100%", "a bad escape stays as it is");
        let none = StreamOptions::from_query(&query_pairs(Some("command=ls")), true).expect_err("no stream");
        assert!(none.contains("at least 1 of stdin, stdout, stderr"), "{none}");
        let no_command = StreamOptions::from_query(&query_pairs(Some("stdout=1")), true).expect_err("no command");
        assert!(no_command.contains("command"), "{no_command}");
        assert!(StreamOptions::from_query(&query_pairs(Some("stdout=1")), false).is_ok(), "attach has no command");
    }

    #[test]
    fn only_the_api_servers_client_name_is_accepted() {
        let cert = |name: &str| {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
            params.distinguished_name.push(rcgen::DnType::CommonName, name);
            params.self_signed(&rcgen::KeyPair::generate().expect("key")).expect("cert").der().to_vec()
        };
        assert!(certificate_names(&cert(API_SERVER_CLIENT_NAME), API_SERVER_CLIENT_NAME));
        assert!(!certificate_names(&cert("kube-apiserver-kubelet-clientX"), API_SERVER_CLIENT_NAME));
        assert!(!certificate_names(&cert("someone"), API_SERVER_CLIENT_NAME));
    }
}
