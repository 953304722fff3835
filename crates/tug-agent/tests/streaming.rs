//! Logs, exec and the agent's API through the real API server, a real node agent and a real
//! containerd (all but containerd in this process), with kube-rs and the real kubectl as
//! clients. Needs root, as `scripts/test.sh` and CI run it.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use futures::{AsyncBufReadExt, SinkExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::Client;
use kube::api::{Api, AttachParams, LogParams, PostParams};
use serde_json::json;
use support::{Agent, Cluster, DEADLINE, Host};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tug_apiserver::server::RunningServer;
use tug_testkit::eventually;

/// A kube-rs client over HTTPS (upgrades need a real connection), from the server's kubeconfig.
async fn https_client(server: &RunningServer) -> Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(&server.kubeconfig).expect("the kubeconfig reads");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("config");
    Client::try_from(config).expect("a client")
}

fn pod(name: &str, containers: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": containers},
    }))
    .expect("a valid Pod")
}

fn busybox(name: &str, script: &str) -> serde_json::Value {
    json!({
        "name": name,
        "image": "localhost/busybox:latest",
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", script],
    })
}

/// Prints three lines, then "more" whenever /tmp/more appears, and exits 1 (after "bye")
/// once /tmp/stop appears.
const LOGGER: &str = "echo one; echo two; echo three; \
    while [ ! -f /tmp/stop ]; do [ -f /tmp/more ] && echo more && rm -f /tmp/more; sleep 0.1; done; \
    rm -f /tmp/stop; echo bye; exit 1";

/// The pod once its container `container` runs with at least `restarts` restarts.
async fn running(pods: &Api<Pod>, name: &str, restarts: i32) -> Pod {
    eventually(&format!("{name} running after {restarts} restarts"), DEADLINE, || async {
        let pod = pods.get(name).await.map_err(|e| e.to_string())?;
        let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.clone()).unwrap_or_default();
        let ok = statuses
            .iter()
            .all(|s| s.restart_count >= restarts && s.state.as_ref().is_some_and(|st| st.running.is_some()));
        if ok && !statuses.is_empty() { Ok(pod) } else { Err(format!("{statuses:?}")) }
    })
    .await
}

/// Runs `command` in the pod's first container; returns stdout and the final Status.
async fn exec(pods: &Api<Pod>, name: &str, command: &[&str], stdin: Option<&str>) -> (String, Status) {
    let params = AttachParams::default().stdin(stdin.is_some()).stderr(false);
    let mut process = pods.exec(name, command.iter().copied(), &params).await.expect("exec starts");
    if let Some(input) = stdin {
        process.stdin().expect("stdin").write_all(input.as_bytes()).await.expect("stdin written");
    }
    let mut out = String::new();
    process.stdout().expect("stdout").read_to_string(&mut out).await.expect("stdout read");
    let status = process.take_status().expect("status").await.expect("a final status");
    (out, status)
}

async fn logs(pods: &Api<Pod>, name: &str, params: LogParams) -> String {
    pods.logs(name, &params).await.unwrap_or_else(|e| panic!("logs of {name}: {e}"))
}

fn api_error(result: Result<String, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new("kubectl").env("KUBECONFIG", kubeconfig).args(args).output().expect("kubectl runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logs_and_exec_reach_containers_through_the_api_server() {
    let cluster = Cluster::start().await;
    let (host, mut options) = Host::new();
    options.node_ip = Some("127.0.0.1".parse().expect("ip"));
    options.api_port = 0;
    options.ca_cert_pem = Some(cluster.server.pki.ca_cert_pem.clone());
    let agent = Agent::start(&cluster.client, &options);
    let client = https_client(&cluster.server).await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let post = PostParams::default();

    // The node publishes where its API listens.
    let node = eventually("the node to publish its API port", DEADLINE, || async {
        let nodes: Api<Node> = Api::all(client.clone());
        let node = nodes.get(&options.node_name).await.map_err(|e| e.to_string())?;
        let port = node.status.as_ref().and_then(|s| s.daemon_endpoints.clone()).and_then(|d| d.kubelet_endpoint);
        match port {
            Some(endpoint) if endpoint.port > 0 => Ok(node),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let api_port = node.status.and_then(|s| s.daemon_endpoints).and_then(|d| d.kubelet_endpoint).expect("port").port;

    pods.create(&post, &pod("logger", json!([busybox("main", LOGGER)]))).await.expect("created");
    pods.create(&post, &pod("two", json!([busybox("a", "sleep 3600"), busybox("b", "sleep 3600")])))
        .await
        .expect("created");
    let missing_image = json!([{"name": "c", "image": "localhost/nope:latest", "imagePullPolicy": "Never"}]);
    pods.create(&post, &pod("stuck", missing_image)).await.expect("created");
    pods.create(&post, &pod("web", json!([busybox("web", "httpd -f -p 8080 -h /etc")]))).await.expect("created");
    running(&pods, "logger", 0).await;

    // Logs: everything, a tail, timestamps.
    let all = eventually("the logger's first lines", DEADLINE, || async {
        let text = pods.logs("logger", &LogParams::default()).await.map_err(|e| e.to_string())?;
        if text.starts_with("one\ntwo\nthree\n") { Ok(text) } else { Err(text) }
    })
    .await;
    assert_eq!(all, "one\ntwo\nthree\n");
    assert_eq!(logs(&pods, "logger", LogParams { tail_lines: Some(1), ..LogParams::default() }).await, "three\n");
    let stamped = logs(&pods, "logger", LogParams { timestamps: true, ..LogParams::default() }).await;
    for line in stamped.lines() {
        let (time, message) = line.split_once(' ').expect("a timestamp and a message");
        assert!(time.parse::<jiff::Timestamp>().is_ok(), "{line:?} starts with an RFC 3339 time");
        assert!(["one", "two", "three"].contains(&message), "{line:?}");
    }
    let recent = logs(&pods, "logger", LogParams { since_seconds: Some(3600), ..LogParams::default() }).await;
    assert_eq!(recent, "one\ntwo\nthree\n");

    // Exec: output, exit status, stdin, and a TTY.
    let (hostname, status) = exec(&pods, "logger", &["cat", "/etc/hostname"], None).await;
    assert_eq!((hostname.trim(), status.status.as_deref()), ("logger", Some("Success")), "{status:?}");
    let (_, failed) = exec(&pods, "logger", &["sh", "-c", "exit 7"], None).await;
    assert_eq!(failed.status.as_deref(), Some("Failure"));
    assert_eq!(failed.reason.as_deref(), Some("NonZeroExitCode"));
    let causes = failed.details.and_then(|d| d.causes).unwrap_or_default();
    assert!(causes.iter().any(|c| c.reason.as_deref() == Some("ExitCode") && c.message.as_deref() == Some("7")));
    let (echoed, _) = exec(&pods, "logger", &["sh", "-c", "read line; echo got:$line"], Some("hello\n")).await;
    assert_eq!(echoed, "got:hello\n");
    let mut shell = pods.exec("logger", ["sh"], &AttachParams::interactive_tty()).await.expect("a TTY exec");
    shell.stdin().expect("stdin").write_all(b"echo $((6*7)) $TERM\nexit\n").await.expect("typed");
    let mut screen = String::new();
    shell.stdout().expect("stdout").read_to_string(&mut screen).await.expect("screen read");
    assert!(screen.contains("42"), "the TTY echoes and runs what was typed: {screen:?}");
    assert!(screen.contains('\r'), "a terminal writes CRLF: {screen:?}");

    // A WebSocket v5.channel.k8s.io client, answered by the agent itself (containerd speaks v4).
    v5_exec_speaks_channels(&client, "logger").await;

    // Follow sees new lines, and moves on to the next attempt after a restart.
    let params = LogParams { follow: true, ..LogParams::default() };
    let mut followed = pods.log_stream("logger", &params).await.expect("a log stream").lines();
    let mut next_line = async || {
        tokio::time::timeout(DEADLINE, followed.try_next()).await.expect("a line in time").expect("read").expect("open")
    };
    for want in ["one", "two", "three"] {
        assert_eq!(next_line().await, want);
    }
    exec(&pods, "logger", &["touch", "/tmp/more"], None).await;
    assert_eq!(next_line().await, "more", "follow sees a line written after it started");
    exec(&pods, "logger", &["touch", "/tmp/stop"], None).await;
    assert_eq!(next_line().await, "bye");
    assert_eq!(next_line().await, "one", "the restarted container's lines follow");
    running(&pods, "logger", 1).await;
    let previous = logs(&pods, "logger", LogParams { previous: true, ..LogParams::default() }).await;
    assert_eq!(previous, "one\ntwo\nthree\nmore\nbye\n");
    assert!(!logs(&pods, "logger", LogParams::default()).await.contains("bye"), "the current attempt's log");

    // Errors as Kubernetes words them.
    assert_eq!(api_error(pods.logs("nope", &LogParams::default()).await).0, 404);
    running(&pods, "two", 0).await;
    assert_eq!(
        api_error(pods.logs("two", &LogParams::default()).await),
        (400, "a container name must be specified for pod two, choose one of: [a b]".into())
    );
    let params = LogParams { container: Some("b".into()), ..LogParams::default() };
    assert_eq!(logs(&pods, "two", params).await, "");
    let (code, message) = api_error(pods.logs("stuck", &LogParams::default()).await);
    assert_eq!(code, 400);
    assert!(message.starts_with("container \"c\" in pod \"stuck\" is waiting to start: "), "{message}");

    // The real kubectl.
    let kubeconfig = cluster.server.kubeconfig.clone();
    let (ok, out, err) = kubectl(&kubeconfig, &["logs", "logger", "--tail=2"]);
    assert!(ok, "{err}");
    assert_eq!(out, "two\nthree\n");
    let (ok, out, err) = kubectl(&kubeconfig, &["exec", "logger", "--", "cat", "/etc/hostname"]);
    assert!(ok, "kubectl exec: {err}");
    assert_eq!(out.trim(), "logger");
    let (ok, _, err) = kubectl(&kubeconfig, &["exec", "logger", "--", "sh", "-c", "exit 3"]);
    assert!(!ok && err.contains("exit code 3"), "{err}");
    let (ok, _, err) = kubectl(&kubeconfig, &["logs", "two"]);
    assert!(ok, "kubectl picks the first container itself: {err}");
    // kubectl's WebSocket tries are answered: no fallback to SPDY.
    let (ok, out, err) = kubectl(&kubeconfig, &["exec", "-v=9", "logger", "--", "cat", "/etc/hostname"]);
    assert!(ok && out.trim() == "logger", "{err}");
    assert!(!err.to_lowercase().contains("fallback"), "kubectl exec used its SPDY fallback: {err}");
    running(&pods, "web", 0).await;
    let (page, log) = kubectl_port_forward(&kubeconfig, "web", 8080, "/hostname").await;
    assert!(page.starts_with("HTTP/1.") && page.ends_with("web\n"), "{page}");
    assert!(!log.to_lowercase().contains("fallback"), "kubectl port-forward used its SPDY fallback: {log}");

    // The agent's API takes only the API server's client certificate.
    assert_refuses_other_clients(api_port, cluster.dir.path()).await;

    for name in ["logger", "two", "stuck", "web"] {
        pods.delete(name, &Default::default()).await.expect("deleted");
    }
    eventually("the pods to be gone", DEADLINE, || async {
        let left = pods.list(&Default::default()).await.map_err(|e| e.to_string())?.items.len();
        if left == 0 { Ok(()) } else { Err(format!("{left} left")) }
    })
    .await;
    agent.stop().await;
    drop(host);
}

/// A raw v5 WebSocket exec of the pod's container: sends `input` (binary messages: stdin,
/// resize, close signals), then returns stdout (channel 1) and the status (channel 3) once the
/// server closed.
async fn v5_exec(client: &Client, pod: &str, query: &str, input: &[&[u8]]) -> (String, Status) {
    let uri = format!("/api/v1/namespaces/default/pods/{pod}/exec?{query}");
    let request = http::Request::get(uri).body(Vec::new()).expect("a request");
    let connection = client.connect(request).await.expect("the WebSocket upgrade");
    assert!(connection.supports_stream_close(), "the server chose v5.channel.k8s.io");
    let mut websocket = connection.into_stream();
    for message in input {
        websocket.send(Message::binary(message.to_vec())).await.expect("sent");
    }
    let (mut stdout, mut status) = (String::new(), None);
    let read = async {
        while let Some(message) = websocket.next().await {
            let payload = match message.expect("a message") {
                Message::Binary(payload) => payload,
                Message::Close(_) => break,
                _ => continue,
            };
            match payload.split_first() {
                Some((1, data)) => stdout.push_str(&String::from_utf8_lossy(data)),
                Some((3, json)) => status = Some(serde_json::from_slice::<Status>(json).expect("a Status")),
                other => panic!("unexpected message {other:?}"),
            }
        }
    };
    tokio::time::timeout(DEADLINE, read).await.expect("the exec ends in time");
    (stdout, status.expect("a status on channel 3"))
}

async fn v5_exec_speaks_channels(client: &Client, pod: &str) {
    // stdin, then the close signal for it: cat sees end of file and exits.
    let query = "command=cat&stdin=true&stdout=true&stderr=true";
    let (out, status) = v5_exec(client, pod, query, &[b"\x00hello v5\n", &[255, 0]]).await;
    assert_eq!((out.as_str(), status.status.as_deref()), ("hello v5\n", Some("Success")), "{status:?}");

    let (_, failed) = v5_exec(client, pod, "command=sh&command=-c&command=exit%203&stdout=true", &[]).await;
    assert_eq!((failed.status.as_deref(), failed.reason.as_deref()), (Some("Failure"), Some("NonZeroExitCode")));
    let causes = failed.details.and_then(|d| d.causes).unwrap_or_default();
    assert!(causes.iter().any(|c| c.reason.as_deref() == Some("ExitCode") && c.message.as_deref() == Some("3")));

    // A TTY sized by a resize message. The resize travels apart from the process start, so the
    // script waits (up to 5 s) for the size before printing it.
    let script =
        "for i in $(seq 50); do [ \"$(stty size 2>/dev/null)\" = \"30 100\" ] && break; sleep 0.1; done; stty size";
    let query = format!("command=sh&command=-c&command={}&stdin=true&stdout=true&tty=true", encode(script));
    let (screen, status) = v5_exec(client, pod, &query, &[b"\x04{\"Width\":100,\"Height\":30}"]).await;
    assert_eq!(screen.trim(), "30 100", "the terminal has the size sent");
    assert!(screen.contains('\r'), "a terminal writes CRLF: {screen:?}");
    assert_eq!(status.status.as_deref(), Some("Success"), "{status:?}");
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// `kubectl port-forward` of the pod's `port` on a free local port, one HTTP GET of `path`
/// through it; returns the answer and kubectl's -v=9 log.
async fn kubectl_port_forward(kubeconfig: &Path, pod: &str, port: u16, path: &str) -> (String, String) {
    use std::io::{BufRead, BufReader, Read};
    let mut child = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(["port-forward", "-v=9", pod, &format!(":{port}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let log = std::thread::spawn(move || {
        let mut log = String::new();
        let _ = stderr.read_to_string(&mut log);
        log
    });
    // "Forwarding from 127.0.0.1:PORT -> 8080". The rest of stdout is drained: kubectl dies
    // of SIGPIPE when it writes "Handling connection" to a closed pipe.
    let (port_sender, port_receiver) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let local = first.split(" -> ").next().and_then(|from| from.rsplit(':').next()).and_then(|p| p.parse().ok());
        let _ = port_sender.send(local);
        lines.for_each(drop);
    });
    let local: Option<u16> = port_receiver.await.ok().flatten();
    let page = async {
        let local = local.ok_or("no local port in kubectl's output")?;
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", local)).await.map_err(|e| e.to_string())?;
        tcp.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).await.map_err(|e| e.to_string())?;
        let mut page = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match tcp.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => page.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("{e} after {:?}", String::from_utf8_lossy(&page))),
            }
        }
        Ok::<_, String>(String::from_utf8_lossy(&page).into_owned())
    };
    let page = tokio::time::timeout(DEADLINE, page).await.unwrap_or_else(|_| Err("timed out".into()));
    let _ = child.kill();
    let _ = child.wait();
    let log = log.join().unwrap_or_default();
    (page.unwrap_or_else(|e| panic!("no page through kubectl port-forward: {e}: {log}")), log)
}

/// TLS to the agent's API: no client certificate fails; a CA-signed one of another identity
/// gets 401.
async fn assert_refuses_other_clients(port: i32, server_dir: &Path) {
    let port = u16::try_from(port).expect("a port");
    let get = async |config: rustls::ClientConfig| -> Result<String, String> {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let mut tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut answer = String::new();
        tls.read_to_string(&mut answer).await.map_err(|e| e.to_string())?;
        Ok(answer)
    };
    let builder = || {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer))
    };
    let anonymous = get(builder().with_no_client_auth()).await;
    assert!(anonymous.as_ref().is_err() || anonymous.as_ref().is_ok_and(|a| a.is_empty()), "{anonymous:?}");

    // Same CA, another name.
    let ca_key = std::fs::read_to_string(server_dir.join("tls/ca.key")).expect("the CA key");
    let ca_key = rcgen::KeyPair::from_pem(&ca_key).expect("a key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.distinguished_name.push(rcgen::DnType::CommonName, "tugboat-ca");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::new(ca, &ca_key);
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, "someone-else");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &issuer).expect("signed");
    let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
    let other = builder().with_client_auth_cert(vec![cert.der().clone()], key_der).expect("client auth");
    let answer = get(other).await.expect("the handshake passes: the CA signed it");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

#[derive(Debug)]
struct AnyServer;

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
    }
}
