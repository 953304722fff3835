//! The pod subresources served by the node agent: `pods/log`, `pods/exec`, `pods/attach` and
//! `pods/portforward`. The server checks the request against the pod (it exists, is bound, the
//! container is named and, for logs, has started), finds the agent from the pod's node
//! (InternalIP and `status.daemonEndpoints.kubeletEndpoint.Port`) and forwards the request
//! there over mutual TLS with its `apiserver-kubelet-client` certificate:
//!
//! - logs: the agent's chunked text is streamed back as it comes;
//! - exec, attach, port-forward: the client's upgrade request (WebSocket `v5`/`v4.channel.k8s.io`
//!   offers, or SPDY) goes to the agent unchanged; when the agent switches protocols the server
//!   answers the client the same and copies bytes both ways, as kube-apiserver's upgrade-aware
//!   proxy does. The agent relays to the runtime's streaming server, which picks the protocol.

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tug_core::status::ApiError;

use crate::Api;
use crate::request::{Query, ResourceRequest};

/// The pod subresources proxied to the node agent.
pub const AGENT_SUBRESOURCES: &[&str] = &["log", "exec", "attach", "portforward"];

/// Whether a request is one of the proxied pod subresources.
pub fn is_proxied(req: &ResourceRequest) -> bool {
    req.rt.kind == "Pod"
        && req.name.is_some()
        && req.subresource.as_deref().is_some_and(|s| AGENT_SUBRESOURCES.contains(&s))
}

/// How the server connects to agents: TLS presenting the kubelet-client certificate.
#[derive(Clone)]
pub struct KubeletClient {
    connector: TlsConnector,
}

impl std::fmt::Debug for KubeletClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeletClient")
    }
}

impl KubeletClient {
    /// A client presenting `cert_pem` (with `key_pem`) to agents.
    pub fn new(cert_pem: &str, key_pem: &str) -> Result<KubeletClient, String> {
        use rustls::pki_types::pem::PemObject;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("kubelet client certificate: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| format!("kubelet client key: {e}"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            // Agents serve certificates they make for themselves, which nothing vouches for:
            // like Kubernetes without --kubelet-certificate-authority, the server does not
            // verify them. The agent side is authenticated: it accepts only our certificate.
            .with_custom_certificate_verifier(Arc::new(AnyAgentCertificate(provider)))
            .with_client_auth_cert(certs, key)
            .map_err(|e| format!("kubelet client certificate: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(KubeletClient { connector: TlsConnector::from(Arc::new(config)) })
    }
}

/// Accepts whatever certificate an agent serves (signatures are still checked).
#[derive(Debug)]
struct AnyAgentCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyAgentCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn names(containers: Option<&Value>) -> Vec<String> {
    containers
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(|c| c["name"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// The container a request is for: the one named (`container=`), or the pod's only one.
pub fn choose_container(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let containers = names(pod["spec"].get("containers"));
    let init = names(pod["spec"].get("initContainers"));
    let ephemeral = names(pod["spec"].get("ephemeralContainers"));
    match requested.filter(|c| !c.is_empty()) {
        Some(wanted) if containers.iter().chain(&init).chain(&ephemeral).any(|c| c == wanted) => Ok(wanted.to_string()),
        Some(wanted) => Err(ApiError::bad_request(format!("container {wanted} is not valid for pod {name}"))),
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut message =
                format!("a container name must be specified for pod {name}, choose one of: [{}]", containers.join(" "));
            if !init.is_empty() {
                message.push_str(&format!(" or one of the init containers: [{}]", init.join(" ")));
            }
            Err(ApiError::bad_request(message))
        }
    }
}

/// Whether the container has logs to read: it ran (or runs), or `previous` asks for an
/// attempt that ended. The messages are the kubelet's.
pub fn check_logs_available(pod: &Value, container: &str, previous: bool) -> Result<(), ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let status = ["containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"]
        .iter()
        .filter_map(|field| pod["status"][field].as_array())
        .flatten()
        .find(|s| s["name"].as_str() == Some(container));
    let last_terminated = status.is_some_and(|s| s["lastState"].get("terminated").is_some());
    if previous {
        return if last_terminated {
            Ok(())
        } else {
            Err(ApiError::bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{name}\" not found"
            )))
        };
    }
    let state = status.map(|s| &s["state"]);
    let started = state.is_some_and(|s| s.get("running").is_some() || s.get("terminated").is_some());
    if started || last_terminated {
        return Ok(());
    }
    let reason = state.and_then(|s| s["waiting"]["reason"].as_str()).unwrap_or("ContainerCreating");
    Err(ApiError::bad_request(format!("container \"{container}\" in pod \"{name}\" is waiting to start: {reason}")))
}

/// The agent's address from a Node: its InternalIP and published API port.
pub fn agent_address(node: &Value) -> Result<String, ApiError> {
    let name = node["metadata"]["name"].as_str().unwrap_or_default();
    let ip = node["status"]["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
        .and_then(|a| a["address"].as_str())
        .ok_or_else(|| ApiError::unavailable(format!("node {name} reports no InternalIP")))?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64().unwrap_or(0);
    if port == 0 {
        return Err(ApiError::unavailable(format!("node {name} publishes no agent API port")));
    }
    Ok(if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") })
}

/// The agent's path for a subresource request: the kubelet's endpoint names.
pub fn agent_path(sub: &str, namespace: &str, pod: &str, container: &str, query: Option<&str>) -> String {
    let path = match sub {
        "log" => format!("/containerLogs/{namespace}/{pod}/{container}"),
        "exec" => format!("/exec/{namespace}/{pod}/{container}"),
        "attach" => format!("/attach/{namespace}/{pod}/{container}"),
        _ => format!("/portForward/{namespace}/{pod}"),
    };
    match query.filter(|q| !q.is_empty()) {
        Some(query) => format!("{path}?{query}"),
        None => path,
    }
}

fn query_value<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| match pair.split_once('=') {
        Some((n, v)) if n == name => Some(v),
        None if pair == name => Some(""),
        _ => None,
    })
}

/// Headers that belong to the client's hop, not to the agent.
fn forwarded(name: &header::HeaderName) -> bool {
    ![header::HOST, header::AUTHORIZATION, header::CONTENT_LENGTH, header::TRANSFER_ENCODING].contains(name)
}

fn status_from_agent(status: StatusCode, body: &[u8]) -> ApiError {
    let message = String::from_utf8_lossy(body).trim().to_string();
    match status.as_u16() {
        400 => ApiError::bad_request(message),
        404 => ApiError::new(404, "NotFound", message),
        code => ApiError::new(if code < 400 { 500 } else { code }, "InternalError", message),
    }
}

impl Api {
    /// Serves a proxied pod subresource (see the module doc).
    pub(crate) async fn proxy(
        self: &Arc<Self>,
        req: &ResourceRequest,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        upgrade: Option<OnUpgrade>,
    ) -> Result<Response<Body>, ApiError> {
        let sub = req.subresource.as_deref().unwrap_or_default();
        let allowed =
            if sub == "log" { method == Method::GET } else { method == Method::GET || method == Method::POST };
        if !allowed {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource: {method} pods/{sub}"
            )));
        }
        let query = uri.query();
        let pod = self.get(req, &Query::default()).await?;
        let pod_name = req.name.as_deref().unwrap_or_default();
        let namespace = req.namespace.as_deref().unwrap_or("default");
        let container = match sub {
            "portforward" => String::new(),
            _ => choose_container(&pod, query_value(query, "container"))?,
        };
        if sub == "log" {
            let previous = query_value(query, "previous").is_some_and(|v| matches!(v, "" | "true" | "1"));
            check_logs_available(&pod, &container, previous)?;
        }
        let node_name = pod["spec"]["nodeName"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::bad_request(format!("pod {pod_name} does not have a host assigned")))?;
        let nodes =
            tug_core::registry::by_path("", "v1", "nodes").ok_or_else(|| ApiError::internal("no nodes type"))?;
        let node_req = ResourceRequest {
            rt: nodes,
            namespace: None,
            name: Some(node_name.to_string()),
            subresource: None,
            watch_path: false,
        };
        let node = self.get(&node_req, &Query::default()).await?;
        let address = agent_address(&node)?;
        let client = self
            .kubelet_client
            .get()
            .ok_or_else(|| ApiError::unavailable("this server has no client certificate for node agents"))?;
        let path = agent_path(sub, namespace, pod_name, &container, query);
        let unreachable = |e: &dyn std::fmt::Display| {
            ApiError::unavailable(format!("cannot reach the agent of node {node_name} at {address}: {e}"))
        };
        let tcp = TcpStream::connect(&address).await.map_err(|e| unreachable(&e))?;
        let _ = tcp.set_nodelay(true);
        let server_name =
            ServerName::try_from(address.rsplit_once(':').map_or("", |(h, _)| h).trim_matches(['[', ']']))
                .map(|n| n.to_owned())
                .map_err(|e| unreachable(&e))?;
        let tls = client.connector.connect(server_name, tcp).await.map_err(|e| unreachable(&e))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| unreachable(&e))?;
        tokio::spawn(connection.with_upgrades());
        let mut request = Request::builder().method(method.clone()).uri(path).header(header::HOST, address.as_str());
        for (name, value) in headers.iter().filter(|(name, _)| forwarded(name)) {
            request = request.header(name, value);
        }
        let request = request.body(Empty::<Bytes>::new()).map_err(|e| ApiError::internal(e.to_string()))?;
        let mut answer = sender.send_request(request).await.map_err(|e| unreachable(&e))?;
        let status = answer.status();
        if status == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client_upgrade) = upgrade else {
                return Err(ApiError::bad_request("this request cannot be upgraded (HTTP/2?); use HTTP/1.1"));
            };
            let agent_upgrade = hyper::upgrade::on(&mut answer);
            tokio::spawn(async move {
                match tokio::try_join!(client_upgrade, agent_upgrade) {
                    Ok((client, agent)) => {
                        let _ =
                            tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(agent)).await;
                    }
                    Err(error) => tracing::debug!(%error, "stream upgrade failed"),
                }
            });
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            *response.headers_mut() = answer.headers().clone();
            return Ok(response);
        }
        if !status.is_success() {
            let body = answer.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            return Err(status_from_agent(status, &body));
        }
        if sub != "log" {
            return Err(ApiError::bad_request(format!(
                "pods/{sub} needs a connection upgrade (WebSocket v5.channel.k8s.io or v4.channel.k8s.io, or SPDY/3.1)"
            )));
        }
        let mut response = Response::new(Body::new(answer.into_body()));
        response.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
        response.headers_mut().insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-cache, private"));
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: &[&str], init: &[&str], statuses: Value) -> Value {
        let list = |names: &[&str]| names.iter().map(|n| json!({"name": n, "image": "i"})).collect::<Vec<_>>();
        json!({
            "metadata": {"name": "p"},
            "spec": {"containers": list(containers), "initContainers": list(init), "nodeName": "n1"},
            "status": {"containerStatuses": statuses},
        })
    }

    #[test]
    fn the_container_is_the_named_or_the_only_one() {
        // (containers, init containers, requested, the chosen one or the error)
        type Case = (
            &'static [&'static str],
            &'static [&'static str],
            Option<&'static str>,
            Result<&'static str, &'static str>,
        );
        let cases: [Case; 6] = [
            (&["a"], &[], None, Ok("a")),
            (&["a", "b"], &[], Some("b"), Ok("b")),
            (&["a"], &["setup"], Some("setup"), Ok("setup")),
            (&["a", "b"], &[], None, Err("a container name must be specified for pod p, choose one of: [a b]")),
            (
                &["a", "b"],
                &["setup"],
                None,
                Err(
                    "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [setup]",
                ),
            ),
            (&["a"], &[], Some("zz"), Err("container zz is not valid for pod p")),
        ];
        for (containers, init, requested, want) in cases {
            let got = choose_container(&pod(containers, init, json!([])), requested);
            match (got, want) {
                (Ok(name), Ok(want)) => assert_eq!(name, want),
                (Err(e), Err(want)) => assert_eq!((e.code, e.message.as_str()), (400, want)),
                (got, want) => panic!("{requested:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn logs_wait_until_the_container_started() {
        let waiting = json!([{"name": "c", "state": {"waiting": {"reason": "ErrImagePull"}}}]);
        let crashed = json!([{"name": "c", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                              "lastState": {"terminated": {"exitCode": 1}}}]);
        let running = json!([{"name": "c", "state": {"running": {}}}]);
        let cases = [
            (json!([]), false, Err("container \"c\" in pod \"p\" is waiting to start: ContainerCreating")),
            (waiting.clone(), false, Err("container \"c\" in pod \"p\" is waiting to start: ErrImagePull")),
            (crashed.clone(), false, Ok(())),
            (crashed, true, Ok(())),
            (running.clone(), false, Ok(())),
            (running, true, Err("previous terminated container \"c\" in pod \"p\" not found")),
        ];
        for (statuses, previous, want) in cases {
            let got = check_logs_available(&pod(&["c"], &[], statuses.clone()), "c", previous);
            assert_eq!(got.map_err(|e| e.message), want.map_err(str::to_string), "{statuses} previous={previous}");
        }
    }

    #[test]
    fn the_agent_is_found_from_the_node() {
        let node = |port: u64| {
            json!({"metadata": {"name": "n1"}, "status": {
                "addresses": [{"type": "Hostname", "address": "box"}, {"type": "InternalIP", "address": "10.0.0.5"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            }})
        };
        assert_eq!(agent_address(&node(10250)).expect("address"), "10.0.0.5:10250");
        assert_eq!(agent_address(&node(0)).expect_err("no port").code, 503);
        assert_eq!(
            agent_path("log", "ns", "p", "c", Some("follow=true&tailLines=2")),
            "/containerLogs/ns/p/c?follow=true&tailLines=2"
        );
        assert_eq!(agent_path("exec", "ns", "p", "c", None), "/exec/ns/p/c");
        assert_eq!(agent_path("portforward", "ns", "p", "", Some("ports=80")), "/portForward/ns/p?ports=80");
        assert_eq!(query_value(Some("a=1&container=web&previous"), "container"), Some("web"));
        assert_eq!(query_value(Some("a=1&previous"), "previous"), Some(""));
    }
}
