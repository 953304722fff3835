//! The DNS server: hickory-server's UDP and TCP loops around a [`RequestHandler`] that answers
//! cluster names from the cache ([`super::answer::decide`]) and forwards the rest to the host's
//! resolvers. The caller chooses the address (a node-local one, `127.0.0.x:53`, a free port in
//! tests) and keeps the cache current.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{Record, RecordType};
use hickory_server::net::NetError;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo, Server};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;

use super::answer::{Answer, Decision, decide};
use super::cache::DnsCache;
use super::forward::Upstreams;

/// The cache as the server and its feeder share it. Answers are computed under the read lock
/// with no await inside, so a writer waits at most one answer.
pub type SharedDnsCache = Arc<RwLock<DnsCache>>;

/// What one client can cost the server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Larger queries are refused: a question with EDNS fits in a few hundred bytes, and
    /// whatever is forwarded must not amplify toward the upstream.
    pub max_query_bytes: usize,
    /// Forwards waiting on upstreams at once; past it, REFUSED at once (as CoreDNS's `forward
    /// max_concurrent`), so a flood of external names cannot pile up sockets and memory.
    /// Cluster names are answered from memory and never wait for a permit.
    pub max_forwards_in_flight: usize,
    /// The largest UDP answer sent, whatever the client's EDNS buffer says (DNS Flag Day 2020:
    /// 1232 bytes avoids fragmentation); larger answers are truncated and retried over TCP.
    pub max_udp_payload: u16,
    /// A TCP connection idle this long is closed.
    pub tcp_idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_query_bytes: 1232,
            max_forwards_in_flight: 1000,
            max_udp_payload: 1232,
            tcp_idle_timeout: Duration::from_secs(10),
        }
    }
}

/// Answers one request: cluster names from the cache, others through the upstreams.
#[derive(Debug)]
pub struct ClusterDnsHandler {
    cache: SharedDnsCache,
    upstreams: Upstreams,
    forwards: Arc<Semaphore>,
    limits: Limits,
}

impl ClusterDnsHandler {
    pub fn new(cache: SharedDnsCache, upstreams: Upstreams, limits: Limits) -> Self {
        Self { cache, upstreams, forwards: Arc::new(Semaphore::new(limits.max_forwards_in_flight)), limits }
    }

    async fn respond<R: ResponseHandler>(
        &self,
        request: &Request,
        response_handle: &mut R,
    ) -> Result<ResponseInfo, NetError> {
        let edns = request.edns.as_ref().map(|edns| {
            let mut reply = Edns::new();
            reply.set_dnssec_ok(edns.flags().dnssec_ok);
            reply.set_max_payload(edns.max_payload().clamp(512, self.limits.max_udp_payload));
            reply
        });
        let builder = || MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let error_reply = |code| builder().error_msg(&request.metadata, code);
        if request.as_slice().len() > self.limits.max_query_bytes {
            return response_handle.send_response(error_reply(ResponseCode::Refused)).await;
        }
        if request.metadata.op_code != OpCode::Query {
            return response_handle.send_response(error_reply(ResponseCode::NotImp)).await;
        }
        let Ok(info) = request.request_info() else {
            return response_handle.send_response(error_reply(ResponseCode::FormErr)).await;
        };
        let question = info.query.original();
        let decision = {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            decide(&cache, question.name(), question.query_type())
        };
        let mut reply = Metadata::response_from_request(&request.metadata);
        reply.recursion_available = true;
        let (answers, authorities, additionals) = match decision {
            Decision::Refuse => {
                return response_handle.send_response(error_reply(ResponseCode::Refused)).await;
            }
            Decision::Answer(answer) => {
                reply.authoritative = true;
                reply.response_code = answer.code;
                self.complete_external_name(answer, question.query_type()).await
            }
            Decision::Forward => {
                let Ok(_permit) = self.forwards.try_acquire() else {
                    return response_handle.send_response(error_reply(ResponseCode::Refused)).await;
                };
                match self.upstreams.forward(request.as_slice()).await {
                    Ok(upstream) => {
                        reply.authoritative = upstream.metadata.authoritative;
                        reply.authentic_data = upstream.metadata.authentic_data;
                        reply.recursion_available = upstream.metadata.recursion_available;
                        reply.response_code = upstream.metadata.response_code;
                        (upstream.answers, upstream.authorities, upstream.additionals)
                    }
                    Err(error) => {
                        tracing::debug!(%error, name = %question.name(), "forward failed");
                        return response_handle.send_response(error_reply(ResponseCode::ServFail)).await;
                    }
                }
            }
        };
        let response =
            builder().build(reply, answers.iter(), authorities.iter(), std::iter::empty(), additionals.iter());
        response_handle.send_response(response).await
    }

    /// An ExternalName pointing outside the cluster: its target's records from the upstreams
    /// follow the CNAME. If they cannot be had the CNAME goes alone, for the client to chase
    /// (CoreDNS answers NODATA then; the CNAME is the more useful half-answer).
    async fn complete_external_name(
        &self,
        mut answer: Answer,
        qtype: RecordType,
    ) -> (Vec<Record>, Vec<Record>, Vec<Record>) {
        if let Some(target) = answer.resolve_upstream.take()
            && let Ok(_permit) = self.forwards.try_acquire()
        {
            match self.upstreams.lookup(&target, qtype).await {
                Ok(upstream) => answer.answers.extend(upstream.answers),
                Err(error) => tracing::debug!(%error, %target, "ExternalName target unresolved"),
            }
        }
        (answer.answers, answer.authorities, answer.additionals)
    }
}

#[async_trait::async_trait]
impl RequestHandler for ClusterDnsHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        match self.respond(request, &mut response_handle).await {
            Ok(info) => info,
            Err(error) => {
                tracing::debug!(%error, "could not send a DNS response");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header { metadata, counts: HeaderCounts::default() })
            }
        }
    }
}

/// A running cluster DNS server (UDP and TCP on one address).
pub struct DnsServer {
    server: Server<ClusterDnsHandler>,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer").field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}

impl DnsServer {
    /// Serves UDP and TCP on `listen` (port 0: a free port, the same for both). The upstreams
    /// never include the server's own address.
    pub async fn start(
        listen: SocketAddr,
        cache: SharedDnsCache,
        upstreams: Upstreams,
        limits: Limits,
    ) -> io::Result<Self> {
        let (udp, tcp) = bind_pair(listen).await?;
        let local_addr = udp.local_addr()?;
        let tcp_idle_timeout = limits.tcp_idle_timeout;
        let handler = ClusterDnsHandler::new(cache, upstreams.without(local_addr), limits);
        let mut server = Server::new(handler);
        server.register_socket(udp);
        // Responses queued per TCP connection; queries on one connection are answered in turn.
        server.register_listener(tcp, tcp_idle_timeout, 16);
        Ok(Self { server, local_addr })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting queries and waits for the loops to end.
    pub async fn shutdown(mut self) -> Result<(), NetError> {
        self.server.shutdown_gracefully().await
    }
}

/// A UDP socket and a TCP listener on the same address. With port 0 the UDP port is chosen
/// first; if TCP finds that port taken, another is tried.
async fn bind_pair(listen: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    const ATTEMPTS: usize = 16;
    let mut last_error = None;
    for _ in 0..ATTEMPTS {
        let udp = UdpSocket::bind(listen).await?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(error) if listen.port() == 0 && error.kind() == io::ErrorKind::AddrInUse => {
                last_error = Some(error);
            }
            Err(error) => return Err(error),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no free port for UDP and TCP")))
}
