//! A small HTTPS client that speaks only HTTP/2 (ALPN `h2`), as kubectl and the Go clients do
//! against a Kubernetes API server: a few TLS connections, each multiplexing many requests as
//! streams, picked round-robin. Requests carry a bearer token; the server is trusted through the
//! cluster CA alone.
//!
//! Built on hyper's connection-level client (`hyper::client::conn::http2`) rather than a pooled
//! client, so the number of connections is exactly what the caller asks for.

use crate::ctx;
use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Receive windows as Go's HTTP/2 transport (client-go, kubectl) sets them: 4 MiB per stream and
/// 1 GiB per connection, so a large list is not throttled by window updates.
const STREAM_WINDOW: u32 = 4 << 20;
const CONNECTION_WINDOW: u32 = 1 << 30;

/// Where the API server is and how to trust and authenticate to it.
#[derive(Debug, Clone)]
pub struct Target {
    /// `https://host:port`, without a path.
    pub url: String,
    /// PEM certificates of the CA that signs the serving certificate.
    pub ca_pem: String,
    /// Sent as `Authorization: Bearer <token>`.
    pub token: String,
}

/// `connections` HTTP/2 connections to one server; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct H2Client {
    senders: Vec<http2::SendRequest<Full<Bytes>>>,
    next: AtomicUsize,
    base: String,
    authorization: HeaderValue,
}

/// The response body of a streaming request (a watch), read line by line.
#[derive(Debug)]
pub struct Lines {
    body: Incoming,
    pending: BytesMut,
}

/// Host and port of an `https://host:port` URL; the port defaults to 443.
fn host_and_port(url: &str) -> Result<(String, u16), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("server URL {url:?}: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!("server URL {url:?} is not https"));
    }
    let host = uri.host().ok_or_else(|| format!("server URL {url:?} has no host"))?;
    // An IPv6 literal comes back bracketed; TCP and certificate checks want it bare.
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    Ok((host, uri.port_u16().unwrap_or(443)))
}

/// A rustls client configuration that trusts only `ca_pem` and offers only `h2`.
fn tls_config(ca_pem: &str) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.map_err(ctx("CA certificate PEM"))?).map_err(ctx("CA certificate"))?;
    }
    if roots.is_empty() {
        return Err("the CA PEM holds no certificate".into());
    }
    // The ring provider, as the server uses; nothing is installed process-wide.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ctx("TLS versions"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

impl H2Client {
    /// Opens `connections` TLS connections (at least one) and completes the HTTP/2 handshake on
    /// each; fails if the server does not agree to `h2`.
    pub async fn connect(target: &Target, connections: usize) -> Result<H2Client, String> {
        let (host, port) = host_and_port(&target.url)?;
        let server_name = ServerName::try_from(host.clone()).map_err(ctx("server name"))?;
        let connector = TlsConnector::from(Arc::new(tls_config(&target.ca_pem)?));
        let mut senders = Vec::with_capacity(connections.max(1));
        for _ in 0..connections.max(1) {
            senders.push(open_connection(&connector, &host, port, server_name.clone()).await?);
        }
        let authorization =
            HeaderValue::from_str(&format!("Bearer {}", target.token)).map_err(ctx("bearer token header"))?;
        Ok(H2Client {
            senders,
            next: AtomicUsize::new(0),
            base: target.url.trim_end_matches('/').to_string(),
            authorization,
        })
    }

    /// How many connections requests are spread over.
    pub fn connections(&self) -> usize {
        self.senders.len()
    }

    /// Sends one request and reads the whole response: its status and body. `path` includes
    /// the query; `content_type` is set only when given.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        content_type: Option<&str>,
    ) -> Result<(StatusCode, Bytes), String> {
        let response = self.start(method, path, body, content_type).await?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(ctx("response body"))?.to_bytes();
        Ok((status, body))
    }

    /// Opens a streaming GET (a watch) whose body is read line by line; a status other than
    /// 200 is an error carrying the body.
    pub async fn stream_lines(&self, path: &str) -> Result<Lines, String> {
        let response = self.start(Method::GET, path, Bytes::new(), None).await?;
        let status = response.status();
        if status != StatusCode::OK {
            let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            return Err(format!("GET {path} answered {status}: {}", String::from_utf8_lossy(&body)));
        }
        Ok(Lines { body: response.into_body(), pending: BytesMut::new() })
    }

    /// Sends the request headers and body on the next connection, returning once the response
    /// headers arrived.
    async fn start(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        content_type: Option<&str>,
    ) -> Result<http::Response<Incoming>, String> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::AUTHORIZATION, self.authorization.clone())
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, "tug-bench/h2");
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let request = request.body(Full::new(body)).map_err(ctx("building the request"))?;
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.senders.len();
        let mut sender = self.senders[index].clone();
        sender.ready().await.map_err(ctx("HTTP/2 connection"))?;
        sender.send_request(request).await.map_err(ctx("HTTP/2 request"))
    }
}

/// One TCP + TLS connection with the HTTP/2 handshake done; its driver runs as a task that ends
/// when every sender is dropped.
async fn open_connection(
    connector: &TlsConnector,
    host: &str,
    port: u16,
    server_name: ServerName<'static>,
) -> Result<http2::SendRequest<Full<Bytes>>, String> {
    let tcp = TcpStream::connect((host, port)).await.map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
    tcp.set_nodelay(true).map_err(ctx("TCP_NODELAY"))?;
    let tls = connector.connect(server_name, tcp).await.map_err(ctx("TLS handshake"))?;
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    if alpn.as_deref() != Some(b"h2".as_slice()) {
        return Err(format!(
            "the server did not agree to h2 (ALPN {:?})",
            alpn.map(|p| String::from_utf8_lossy(&p).into_owned())
        ));
    }
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake(TokioIo::new(tls))
        .await
        .map_err(ctx("HTTP/2 handshake"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("HTTP/2 connection ended: {e}");
        }
    });
    Ok(sender)
}

impl Lines {
    /// The next complete line (without its `\n`), or `None` once the stream ended. A final
    /// line without `\n` is returned as well.
    pub async fn next_line(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            if let Some(line) = take_line(&mut self.pending) {
                return Ok(Some(line));
            }
            match self.body.frame().await {
                Some(frame) => {
                    if let Ok(data) = frame.map_err(ctx("stream body"))?.into_data() {
                        self.pending.extend_from_slice(&data);
                    }
                }
                None if self.pending.is_empty() => return Ok(None),
                None => return Ok(Some(self.pending.split().freeze())),
            }
        }
    }
}

/// Removes and returns the first `\n`-terminated line of `pending`, without the `\n`.
fn take_line(pending: &mut BytesMut) -> Option<Bytes> {
    let end = pending.iter().position(|&b| b == b'\n')?;
    let mut line = pending.split_to(end + 1);
    line.truncate(end);
    Some(line.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_at_newlines_and_partial_lines_wait() {
        let mut pending = BytesMut::from(&b"{\"a\":1}\n{\"b\":2}\n{\"c\""[..]);
        assert_eq!(take_line(&mut pending).as_deref(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(take_line(&mut pending).as_deref(), Some(&b"{\"b\":2}"[..]));
        assert_eq!(take_line(&mut pending), None, "an unfinished line stays buffered");
        pending.extend_from_slice(b":3}\n");
        assert_eq!(take_line(&mut pending).as_deref(), Some(&b"{\"c\":3}"[..]));
        assert!(pending.is_empty());
    }

    #[test]
    fn server_urls_give_host_and_port() {
        let cases = [
            ("https://127.0.0.1:6443", Ok(("127.0.0.1".to_string(), 6443))),
            ("https://localhost", Ok(("localhost".to_string(), 443))),
            ("https://[::1]:6443/", Ok(("::1".to_string(), 6443))),
        ];
        for (url, want) in cases {
            assert_eq!(host_and_port(url), want, "{url}");
        }
        assert!(host_and_port("http://127.0.0.1:8080").is_err(), "plain http is refused");
        assert!(host_and_port("not a url").is_err());
    }

    #[test]
    fn a_ca_pem_without_certificates_is_refused() {
        assert!(tls_config("").is_err());
        assert!(tls_config("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n").is_err());
    }

    async fn start_server(dir: &std::path::Path) -> tug_apiserver::server::RunningServer {
        tug_apiserver::server::start(tug_apiserver::server::ServerConfig::local(dir)).await.expect("server starts")
    }

    fn target(server: &tug_apiserver::server::RunningServer, token: &str) -> Target {
        Target { url: server.url.clone(), ca_pem: server.pki.ca_cert_pem.clone(), token: token.to_string() }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_requests_share_few_h2_connections_and_watches_stream_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = start_server(dir.path()).await;
        let client = Arc::new(H2Client::connect(&target(&server, &server.pki.admin_token), 2).await.expect("h2"));
        assert_eq!(client.connections(), 2);

        // 64 requests in flight at once over 2 connections: all answered.
        let gets: Vec<_> = (0..64)
            .map(|_| {
                let client = Arc::clone(&client);
                tokio::spawn(
                    async move { client.send(Method::GET, "/api/v1/namespaces/default", Bytes::new(), None).await },
                )
            })
            .collect();
        for get in gets {
            let (status, body) = get.await.expect("task").expect("get");
            assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        }

        let mut watch = client.stream_lines("/api/v1/namespaces?watch=1&timeoutSeconds=30").await.expect("watch");
        let (status, body) = client
            .send(
                Method::POST,
                "/api/v1/namespaces",
                Bytes::from_static(br#"{"metadata":{"name":"h2-test"}}"#),
                Some("application/json"),
            )
            .await
            .expect("create");
        assert_eq!(status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&body));
        let mut saw_created = false;
        while let Some(line) = watch.next_line().await.expect("watch line") {
            let event: serde_json::Value = serde_json::from_slice(&line).expect("event JSON");
            if event["type"] == "ADDED" && event["object"]["metadata"]["name"] == "h2-test" {
                saw_created = true;
                break;
            }
        }
        assert!(saw_created, "the watch delivered the new namespace");
        drop(watch);
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_token_is_unauthorized_and_a_foreign_ca_fails_the_handshake() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = start_server(dir.path()).await;
        let client = H2Client::connect(&target(&server, "not-the-token"), 1).await.expect("h2");
        let (status, _) = client.send(Method::GET, "/api/v1/namespaces", Bytes::new(), None).await.expect("get");
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        let other_dir = tempfile::tempdir().expect("tempdir");
        let other_pki =
            tug_apiserver::pki::Pki::load_or_create(other_dir.path(), &["localhost".to_string()]).expect("pki");
        let foreign = Target { ca_pem: other_pki.ca_cert_pem, ..target(&server, &server.pki.admin_token) };
        let refused = H2Client::connect(&foreign, 1).await.expect_err("a server signed by another CA is refused");
        assert!(refused.contains("TLS handshake"), "{refused}");
        server.stop().await;
    }
}
