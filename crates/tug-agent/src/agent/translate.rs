//! WebSocket streams the agent answers itself because the runtime cannot: containerd 1.6
//! speaks WebSocket only up to `v4.channel.k8s.io`, and SPDY/3.1.
//!
//! - Exec and attach over WebSocket `v5.channel.k8s.io` ([`exec`]): the agent opens SPDY
//!   (`v4.channel.k8s.io`) to the runtime, creates the kubelet protocol's streams (error, then
//!   stdin, stdout, stderr, resize as asked) and translates. Client binary messages are
//!   `[channel][payload]`: 0 stdin, 4 resize JSON, 255 `[channel]` half-closes that stream.
//!   The runtime's stdout and stderr go out on channels 1 and 2 as they come; its error stream
//!   (the v4 `Status` JSON with the exit code) goes out whole on channel 3 once the output
//!   streams ended, then the WebSocket closes.
//! - Port-forward tunnelled in WebSocket `SPDY/3.1+portforward.k8s.io` ([`tunnel`]): the
//!   binary messages carry a SPDY byte stream, copied as it is to and from the runtime's plain
//!   SPDY upgrade (`portforward.k8s.io`); no SPDY is parsed.
//!
//! As Kubernetes' API server does (StreamTranslator, streamtunnel): clients without a SPDY
//! fallback work, and kubectl no longer spends a refused round trip first.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use futures::{Sink, SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::spdy::{Event, Session};

/// The WebSocket exec/attach protocol the agent translates.
pub const V5_CHANNEL_PROTOCOL: &str = "v5.channel.k8s.io";
/// The SPDY exec/attach protocol asked of the runtime (its status JSON carries the exit code).
pub const V4_CHANNEL_PROTOCOL: &str = "v4.channel.k8s.io";
/// The SPDY port-forward protocol.
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";
/// The WebSocket subprotocol of SPDY port-forward tunnelled in binary messages.
pub const PORT_FORWARD_TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// Channel of the v5 protocol's close signal, `[255, channel]`.
const CLOSE_CHANNEL: u8 = 255;
/// How long a closing WebSocket waits for the client's close.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// The runtime's SPDY streams read at most this much per message.
const TUNNEL_CHUNK: usize = 32 * 1024;

/// Whether the request asks to upgrade to a WebSocket.
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers.get_all(header::UPGRADE).iter().any(|v| v.to_str().is_ok_and(|v| v.eq_ignore_ascii_case("websocket")))
}

/// The WebSocket subprotocols offered, in order (one header or several, comma separated).
pub fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The subprotocol the agent answers itself for this request, if any: `v5.channel.k8s.io` for
/// exec and attach, `SPDY/3.1+portforward.k8s.io` for port-forward. Anything else (SPDY,
/// older WebSocket protocols) goes to the runtime as it is.
pub fn takeover(headers: &HeaderMap, port_forward: bool) -> Option<&'static str> {
    if !is_websocket_upgrade(headers) {
        return None;
    }
    let wanted = if port_forward { PORT_FORWARD_TUNNEL_PROTOCOL } else { V5_CHANNEL_PROTOCOL };
    offered_protocols(headers).iter().any(|p| p == wanted).then_some(wanted)
}

/// The `101 Switching Protocols` headers accepting the WebSocket with `protocol`.
pub fn accept_headers(request: &HeaderMap, protocol: &'static str) -> Result<HeaderMap, String> {
    let version = request.get(header::SEC_WEBSOCKET_VERSION).and_then(|v| v.to_str().ok());
    if version != Some("13") {
        return Err(format!("unsupported WebSocket version {version:?}, want 13"));
    }
    let key = request.get(header::SEC_WEBSOCKET_KEY).ok_or("the WebSocket upgrade has no Sec-WebSocket-Key")?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut headers = HeaderMap::new();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).map_err(|e| e.to_string())?);
    headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
    Ok(headers)
}

/// A kubelet streaming protocol stream, named by its `streamtype` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    Error,
    Stdin,
    Stdout,
    Stderr,
    Resize,
}

impl StreamKind {
    pub fn header(self) -> &'static str {
        match self {
            StreamKind::Error => "error",
            StreamKind::Stdin => "stdin",
            StreamKind::Stdout => "stdout",
            StreamKind::Stderr => "stderr",
            StreamKind::Resize => "resize",
        }
    }

    /// The v5 WebSocket channel of the stream.
    pub fn channel(self) -> u8 {
        match self {
            StreamKind::Stdin => 0,
            StreamKind::Stdout => 1,
            StreamKind::Stderr => 2,
            StreamKind::Error => 3,
            StreamKind::Resize => 4,
        }
    }

    fn of_channel(channel: u8) -> Option<StreamKind> {
        [StreamKind::Stdin, StreamKind::Stdout, StreamKind::Stderr, StreamKind::Error, StreamKind::Resize]
            .into_iter()
            .find(|k| k.channel() == channel)
    }

    /// The streams the runtime sends on: a session ends once they all ended.
    fn is_output(self) -> bool {
        matches!(self, StreamKind::Error | StreamKind::Stdout | StreamKind::Stderr)
    }
}

/// The streams the runtime waits for, in client-go's order: it counts them from the exec's
/// options (a TTY has a resize stream and no stderr).
pub fn streams_for(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Vec<StreamKind> {
    let wanted = [(true, StreamKind::Error), (stdin, StreamKind::Stdin), (stdout, StreamKind::Stdout)];
    let more = [(stderr && !tty, StreamKind::Stderr), (tty, StreamKind::Resize)];
    wanted.into_iter().chain(more).filter(|(on, _)| *on).map(|(_, kind)| kind).collect()
}

/// What a client's binary message asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// Bytes for a stream the client writes (stdin, resize).
    Write(StreamKind, Bytes),
    /// The close signal: the client is done writing this stream.
    Close(StreamKind),
    /// A channel the client cannot write (or an empty message): ignored.
    Ignored,
}

/// Reads a v5 client message.
pub fn client_message(message: &[u8]) -> ClientMessage {
    let Some((&channel, payload)) = message.split_first() else {
        return ClientMessage::Ignored;
    };
    let writable = |k: &StreamKind| matches!(k, StreamKind::Stdin | StreamKind::Resize);
    if channel == CLOSE_CHANNEL {
        return match payload.first().copied().and_then(StreamKind::of_channel).filter(writable) {
            Some(kind) => ClientMessage::Close(kind),
            None => ClientMessage::Ignored,
        };
    }
    match StreamKind::of_channel(channel).filter(writable) {
        Some(kind) => ClientMessage::Write(kind, Bytes::copy_from_slice(payload)),
        None => ClientMessage::Ignored,
    }
}

/// A server message on `channel`.
pub fn server_message(channel: u8, payload: &[u8]) -> Message {
    let mut message = Vec::with_capacity(1 + payload.len());
    message.push(channel);
    message.extend_from_slice(payload);
    Message::binary(message)
}

/// The status a client gets when the runtime ended without one.
pub fn failure_status(message: &str) -> Vec<u8> {
    serde_json::json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "code": 500,
    })
    .to_string()
    .into_bytes()
}

/// Opens a SPDY/3.1 upgrade to the runtime's streaming `url` speaking `protocol`. A refusal is
/// the runtime's status and answer.
pub async fn spdy_upgrade(url: &str, protocol: &str) -> Result<Upgraded, (StatusCode, String)> {
    let failed = |what: &str, e: &dyn std::fmt::Display| (StatusCode::BAD_GATEWAY, format!("{what}: {e}"));
    let uri: http::Uri = url.parse().map_err(|e| failed("runtime streaming URL", &e))?;
    let authority = uri.authority().ok_or_else(|| failed("runtime streaming URL", &url))?.clone();
    let address = format!("{}:{}", authority.host(), authority.port_u16().unwrap_or(80));
    let tcp =
        TcpStream::connect(&address).await.map_err(|e| failed("connecting to the runtime's streaming server", &e))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| failed("runtime streaming server", &e))?;
    tokio::spawn(connection.with_upgrades());
    let request = Request::post(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(header::HOST, authority.as_str())
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .header("X-Stream-Protocol-Version", protocol)
        .body(Empty::<Bytes>::new())
        .map_err(|e| failed("SPDY upgrade request", &e))?;
    let mut answer = sender.send_request(request).await.map_err(|e| failed("runtime streaming server", &e))?;
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = answer.status();
        let body = answer.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        return Err((status, String::from_utf8_lossy(&body).trim().to_string()));
    }
    hyper::upgrade::on(&mut answer).await.map_err(|e| failed("SPDY upgrade", &e))
}

/// Serves a v5 exec or attach: `websocket` is the caller's, `runtime` the runtime's connection
/// after its SPDY upgrade, `streams` what the exec asked ([`streams_for`]).
pub async fn exec<S, R>(websocket: WebSocketStream<S>, runtime: R, streams: Vec<StreamKind>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    R: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut sink, mut source) = websocket.split();
    let (session, mut events) = Session::start(runtime);
    let opened = open_streams(&session, &mut events, &streams).await;
    let ids = match opened {
        Ok(ids) => ids,
        Err(message) => {
            tracing::debug!(%message, "exec streams refused by the runtime");
            let status = failure_status(&format!("the runtime refused the exec streams: {message}"));
            let _ = sink.send(server_message(StreamKind::Error.channel(), &status)).await;
            close_normally(&mut sink, &mut source).await;
            let _ = session.close().await;
            return;
        }
    };
    let by_kind: HashMap<StreamKind, u32> = ids.iter().map(|(id, kind)| (*kind, *id)).collect();
    let upstream = async {
        // The client went away (or broke the protocol) when this returns.
        while let Some(Ok(message)) = source.next().await {
            let sent = match message {
                Message::Binary(payload) => match client_message(&payload) {
                    ClientMessage::Write(kind, data) => match by_kind.get(&kind) {
                        Some(id) => session.send(*id, &data).await,
                        None => Ok(()),
                    },
                    ClientMessage::Close(kind) => match by_kind.get(&kind) {
                        Some(id) => session.finish(*id).await,
                        None => Ok(()),
                    },
                    ClientMessage::Ignored => Ok(()),
                },
                Message::Close(_) => break,
                _ => Ok(()),
            };
            if let Err(error) = sent {
                tracing::debug!(%error, "exec: the runtime stopped taking input");
                break;
            }
        }
    };
    let downstream = forward_output(&mut sink, &mut events, &ids);
    tokio::select! {
        () = upstream => {}
        () = downstream => close_normally(&mut sink, &mut source).await,
    }
    let _ = session.close().await;
}

/// Ends the WebSocket with 1000 (normal closure; client-go reads a close without a code as an
/// error on the stream it was reading) and waits a little for the client's answering close,
/// so the connection does not end under the client's feet.
async fn close_normally<K, S>(sink: &mut K, source: &mut S)
where
    K: Sink<Message, Error = WsError> + Unpin,
    S: futures::Stream<Item = Result<Message, WsError>> + Unpin,
{
    let frame = CloseFrame { code: CloseCode::Normal, reason: "".into() };
    if sink.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let answered = async {
        while let Some(Ok(message)) = source.next().await {
            if message.is_close() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_WAIT, answered).await;
}

/// Opens `streams` and waits until the runtime accepted them all (spdystream drops data sent
/// before its reply). Returns stream id → kind.
async fn open_streams<W>(
    session: &Session<W>,
    events: &mut tokio::sync::mpsc::Receiver<Event>,
    streams: &[StreamKind],
) -> Result<HashMap<u32, StreamKind>, String>
where
    W: AsyncWrite + Unpin + Send,
{
    let mut ids = HashMap::new();
    for kind in streams {
        let id = session.open_stream(&[("streamtype", kind.header())]).await.map_err(|e| e.to_string())?;
        ids.insert(id, *kind);
    }
    let mut waiting: HashSet<u32> = ids.keys().copied().collect();
    // The runtime gives up on streams that do not come within its own creation timeout.
    let deadline = tokio::time::sleep(std::time::Duration::from_secs(30));
    tokio::pin!(deadline);
    while !waiting.is_empty() {
        let event = tokio::select! {
            event = events.recv() => event,
            () = &mut deadline => return Err("no reply to the streams in time".into()),
        };
        match event {
            Some(Event::Reply { stream_id, .. }) => {
                waiting.remove(&stream_id);
            }
            Some(Event::Reset { stream_id, status }) => {
                return Err(format!("stream {stream_id} reset with status {status}"));
            }
            Some(Event::Closed { error }) => {
                return Err(error.unwrap_or_else(|| "the connection closed".into()));
            }
            // Nothing comes before the replies; anything that does has no reader yet.
            Some(_) => {}
            None => return Err("the session ended".into()),
        }
    }
    Ok(ids)
}

/// Forwards the runtime's output until its output streams all ended (or the connection did),
/// then the status on channel 3.
async fn forward_output<K>(
    sink: &mut K,
    events: &mut tokio::sync::mpsc::Receiver<Event>,
    ids: &HashMap<u32, StreamKind>,
) where
    K: Sink<Message, Error = WsError> + Unpin,
{
    let mut open: HashSet<u32> = ids.iter().filter(|(_, kind)| kind.is_output()).map(|(id, _)| *id).collect();
    let mut status = Vec::new();
    let mut ended_by = None;
    while !open.is_empty() {
        match events.recv().await {
            Some(Event::Data { stream_id, data }) => {
                let sent = match ids.get(&stream_id) {
                    Some(StreamKind::Error) => {
                        status.extend_from_slice(&data);
                        Ok(())
                    }
                    Some(kind) if kind.is_output() => sink.send(server_message(kind.channel(), &data)).await,
                    _ => Ok(()),
                };
                if sent.is_err() {
                    return;
                }
            }
            // The kubelet protocol resets its streams when done rather than finishing them.
            Some(Event::Finished { stream_id } | Event::Reset { stream_id, .. }) => {
                open.remove(&stream_id);
            }
            Some(Event::Closed { error }) => {
                ended_by = error;
                break;
            }
            Some(_) => {}
            None => break,
        }
    }
    if status.is_empty() {
        let why = ended_by.unwrap_or_else(|| "the connection closed".into());
        status = failure_status(&format!("the runtime ended the stream without a status: {why}"));
    }
    let _ = sink.send(server_message(StreamKind::Error.channel(), &status)).await;
}

/// Serves SPDY port-forward tunnelled in WebSocket binary messages: copies their payloads to
/// the runtime's SPDY connection and its bytes back, until either side ends.
pub async fn tunnel<S, R>(websocket: WebSocketStream<S>, runtime: R)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    R: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut sink, mut source) = websocket.split();
    let (mut from_runtime, mut to_runtime) = tokio::io::split(runtime);
    let upstream = async {
        while let Some(Ok(message)) = source.next().await {
            let written = match message {
                Message::Binary(payload) => to_runtime.write_all(&payload).await,
                Message::Close(_) => break,
                _ => Ok(()),
            };
            if written.is_err() {
                break;
            }
        }
        let _ = to_runtime.shutdown().await;
    };
    let downstream = async {
        let mut buffer = vec![0u8; TUNNEL_CHUNK];
        loop {
            match from_runtime.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink.send(Message::binary(buffer[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    tokio::select! {
        () = upstream => {}
        () = downstream => close_normally(&mut sink, &mut source).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::spdy::{self, Frame, decode, encode_data};
    use tokio_tungstenite::tungstenite::protocol::Role;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(http::HeaderName::from_bytes(name.as_bytes()).expect("name"), value.parse().expect("value"));
        }
        map
    }

    #[test]
    fn the_agent_answers_v5_exec_and_tunnelled_port_forward_only() {
        let ws = |protocols: &str| headers(&[("upgrade", "websocket"), ("sec-websocket-protocol", protocols)]);
        let cases = [
            (ws("v5.channel.k8s.io"), false, Some(V5_CHANNEL_PROTOCOL)),
            (ws("v5.channel.k8s.io, v4.channel.k8s.io"), false, Some(V5_CHANNEL_PROTOCOL)),
            (ws("v4.channel.k8s.io"), false, None),
            (ws("base64.channel.k8s.io"), false, None),
            (ws("SPDY/3.1+portforward.k8s.io"), true, Some(PORT_FORWARD_TUNNEL_PROTOCOL)),
            (ws("v4.channel.k8s.io"), true, None),
            (ws("SPDY/3.1+portforward.k8s.io"), false, None),
            (headers(&[("upgrade", "SPDY/3.1"), ("x-stream-protocol-version", "v5.channel.k8s.io")]), false, None),
        ];
        for (request, port_forward, want) in cases {
            assert_eq!(takeover(&request, port_forward), want, "{request:?}");
        }
        let two = headers(&[
            ("upgrade", "WebSocket"),
            ("sec-websocket-protocol", "v4.channel.k8s.io"),
            ("sec-websocket-protocol", "v5.channel.k8s.io"),
        ]);
        assert_eq!(takeover(&two, false), Some(V5_CHANNEL_PROTOCOL), "protocols in several headers count");
    }

    #[test]
    fn the_handshake_answer_follows_rfc_6455() {
        // The RFC's own example key and answer.
        let request = headers(&[("sec-websocket-version", "13"), ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")]);
        let answer = accept_headers(&request, V5_CHANNEL_PROTOCOL).expect("accepted");
        assert_eq!(answer[header::SEC_WEBSOCKET_ACCEPT], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(answer[header::SEC_WEBSOCKET_PROTOCOL], "v5.channel.k8s.io");
        assert_eq!(answer[header::UPGRADE], "websocket");
        assert!(accept_headers(&headers(&[("sec-websocket-version", "13")]), V5_CHANNEL_PROTOCOL).is_err());
        assert!(accept_headers(&headers(&[("sec-websocket-key", "x")]), V5_CHANNEL_PROTOCOL).is_err());
    }

    #[test]
    fn streams_follow_the_exec_options() {
        use StreamKind::*;
        let cases = [
            ((false, true, true, false), vec![Error, Stdout, Stderr]),
            ((true, true, true, false), vec![Error, Stdin, Stdout, Stderr]),
            ((true, true, false, true), vec![Error, Stdin, Stdout, Resize]),
            ((true, true, true, true), vec![Error, Stdin, Stdout, Resize]),
        ];
        for ((stdin, stdout, stderr, tty), want) in cases {
            assert_eq!(streams_for(stdin, stdout, stderr, tty), want, "{stdin} {stdout} {stderr} {tty}");
        }
    }

    #[test]
    fn client_messages_decode() {
        let cases: [(&[u8], ClientMessage); 8] = [
            (b"\x00hello", ClientMessage::Write(StreamKind::Stdin, Bytes::from_static(b"hello"))),
            (
                b"\x04{\"Width\":80,\"Height\":24}",
                ClientMessage::Write(StreamKind::Resize, Bytes::from_static(b"{\"Width\":80,\"Height\":24}")),
            ),
            (&[255, 0], ClientMessage::Close(StreamKind::Stdin)),
            (&[255, 4], ClientMessage::Close(StreamKind::Resize)),
            (&[255, 1], ClientMessage::Ignored),
            (&[255], ClientMessage::Ignored),
            (b"\x01out", ClientMessage::Ignored),
            (b"", ClientMessage::Ignored),
        ];
        for (message, want) in cases {
            assert_eq!(client_message(message), want, "{message:?}");
        }
        assert_eq!(server_message(1, b"x"), Message::binary(vec![1, b'x']));
    }

    /// Plays the runtime's side of SPDY: reads frames, answers with `reply` for each.
    struct FakeRuntime {
        io: tokio::io::DuplexStream,
        buffer: Vec<u8>,
    }

    impl FakeRuntime {
        async fn frame(&mut self) -> Frame {
            loop {
                if let Some((frame, used)) = decode(&self.buffer).expect("valid SPDY") {
                    self.buffer.drain(..used);
                    return frame;
                }
                let mut chunk = vec![0u8; 4096];
                let n = self.io.read(&mut chunk).await.expect("read");
                assert!(n > 0, "the agent closed the runtime connection early");
                self.buffer.extend_from_slice(&chunk[..n]);
            }
        }

        async fn write(&mut self, frame: &[u8]) {
            self.io.write_all(frame).await.expect("written");
        }
    }

    fn syn_reply(stream_id: u32) -> Vec<u8> {
        // A reply with an empty (never decoded) header block.
        let mut frame = vec![0x80, 0x03, 0x00, 0x02, 0x00, 0x00, 0x00, 0x04];
        frame.extend_from_slice(&stream_id.to_be_bytes());
        frame
    }

    #[tokio::test]
    async fn exec_translates_between_websocket_channels_and_spdy_streams() {
        let (agent_side, client_side) = tokio::io::duplex(64 * 1024);
        let (runtime_side, fake) = tokio::io::duplex(64 * 1024);
        let server = WebSocketStream::from_raw_socket(agent_side, Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(client_side, Role::Client, None).await;
        let streams = streams_for(true, true, true, false);
        let serving = tokio::spawn(exec(server, runtime_side, streams));
        let mut runtime = FakeRuntime { io: fake, buffer: Vec::new() };

        let mut opened = Vec::new();
        for _ in 0..4 {
            match runtime.frame().await {
                Frame::SynStream { stream_id, .. } => opened.push(stream_id),
                other => panic!("expected SYN_STREAM, got {other:?}"),
            }
        }
        assert_eq!(opened, vec![1, 3, 5, 7], "error, stdin, stdout, stderr");
        for id in &opened {
            runtime.write(&syn_reply(*id)).await;
        }

        client.send(Message::binary(b"\x00hi\n".to_vec())).await.expect("stdin sent");
        client.send(Message::binary(vec![255, 0])).await.expect("close sent");
        let frame = runtime.frame().await;
        assert_eq!(frame, Frame::Data { stream_id: 3, fin: false, data: Bytes::from_static(b"hi\n") });
        assert_eq!(runtime.frame().await, Frame::Data { stream_id: 3, fin: true, data: Bytes::new() });

        runtime.write(&encode_data(5, b"hi\n", false).expect("stdout")).await;
        runtime.write(&encode_data(7, b"warn", false).expect("stderr")).await;
        runtime.write(&encode_data(1, b"{\"status\":", false).expect("status")).await;
        runtime.write(&encode_data(1, b"\"Success\"}", false).expect("status")).await;
        for id in [1, 3, 5, 7] {
            runtime.write(&spdy::encode_rst_stream(id, spdy::STATUS_CANCEL).expect("rst")).await;
        }

        let mut received = Vec::new();
        while let Some(Ok(message)) = client.next().await {
            if let Message::Binary(payload) = message {
                received.push(payload.to_vec());
            }
        }
        assert_eq!(
            received,
            vec![b"\x01hi\n".to_vec(), b"\x02warn".to_vec(), b"\x03{\"status\":\"Success\"}".to_vec()]
        );
        serving.await.expect("the exec ends");
        assert!(matches!(runtime.frame().await, Frame::GoAway { .. }), "the runtime is told goodbye");
    }

    #[tokio::test]
    async fn a_runtime_gone_without_status_is_a_failure_status() {
        let (agent_side, client_side) = tokio::io::duplex(64 * 1024);
        let (runtime_side, fake) = tokio::io::duplex(64 * 1024);
        let server = WebSocketStream::from_raw_socket(agent_side, Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(client_side, Role::Client, None).await;
        let serving = tokio::spawn(exec(server, runtime_side, streams_for(false, true, false, false)));
        let mut runtime = FakeRuntime { io: fake, buffer: Vec::new() };
        for id in [1, 3] {
            assert!(matches!(runtime.frame().await, Frame::SynStream { stream_id, .. } if stream_id == id));
            runtime.write(&syn_reply(id)).await;
        }
        drop(runtime);
        let Some(Ok(Message::Binary(status))) = client.next().await else { panic!("a status message") };
        assert_eq!(status[0], 3);
        let status: serde_json::Value = serde_json::from_slice(&status[1..]).expect("JSON");
        assert_eq!(status["status"], "Failure");
        serving.await.expect("the exec ends");
    }

    #[tokio::test]
    async fn the_tunnel_copies_binary_payloads_both_ways() {
        let (agent_side, client_side) = tokio::io::duplex(64 * 1024);
        let (runtime_side, mut runtime) = tokio::io::duplex(64 * 1024);
        let server = WebSocketStream::from_raw_socket(agent_side, Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(client_side, Role::Client, None).await;
        let serving = tokio::spawn(tunnel(server, runtime_side));
        client.send(Message::binary(b"\x80\x03".to_vec())).await.expect("sent");
        client.send(Message::binary(b"\x00\x01".to_vec())).await.expect("sent");
        let mut four = [0u8; 4];
        runtime.read_exact(&mut four).await.expect("read");
        assert_eq!(&four, b"\x80\x03\x00\x01", "messages join into one byte stream");
        runtime.write_all(b"back").await.expect("written");
        let Some(Ok(Message::Binary(back))) = client.next().await else { panic!("a binary message") };
        assert_eq!(&back[..], b"back");
        drop(runtime);
        assert!(matches!(client.next().await, Some(Ok(Message::Close(_))) | None), "the runtime's end closes");
        serving.await.expect("the tunnel ends");
    }
}
