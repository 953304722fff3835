//! Forwarding names outside the cluster to the host's resolvers: the nameservers of
//! `/etc/resolv.conf`, tried in order, over UDP with a fresh socket per query (a random source
//! port and ID, so an off-path spoofer has to guess both), falling back to TCP when the answer
//! is truncated, each attempt under a deadline.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Where `/etc/resolv.conf` lives.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";
/// The largest DNS message (TCP's length prefix is 16 bits).
const MAX_MESSAGE: usize = u16::MAX as usize;

/// The nameservers of a resolv.conf text, port 53, in order. Zone indexes of link-local IPv6
/// addresses (`fe80::1%eth0`) are dropped: those servers are skipped.
pub fn nameservers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let ip: IpAddr = words.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

/// Why no upstream answered.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream nameserver configured (none in {RESOLV_CONF}?)")]
    NoUpstream,
    #[error("upstream {upstream} did not answer within {timeout:?}")]
    Timeout { upstream: SocketAddr, timeout: Duration },
    #[error("upstream {upstream}: {source}")]
    Io { upstream: SocketAddr, source: io::Error },
    #[error("upstream {upstream} sent an unreadable answer: {reason}")]
    BadAnswer { upstream: SocketAddr, reason: String },
    #[error("the query to forward is not a DNS message: {0}")]
    BadQuery(String),
}

/// The host's resolvers, as the cluster DNS server forwards to them.
#[derive(Debug, Clone)]
pub struct Upstreams {
    servers: Vec<SocketAddr>,
    /// Per attempt (one server, one transport).
    timeout: Duration,
}

impl Upstreams {
    pub fn new(servers: Vec<SocketAddr>, timeout: Duration) -> Self {
        Self { servers, timeout }
    }

    /// The nameservers of the host's `/etc/resolv.conf`.
    pub fn from_resolv_conf(timeout: Duration) -> io::Result<Self> {
        let text = std::fs::read_to_string(RESOLV_CONF)?;
        Ok(Self::new(nameservers(&text), timeout))
    }

    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// Drops `addr` from the servers: a resolver never forwards to itself.
    pub fn without(mut self, addr: SocketAddr) -> Self {
        self.servers.retain(|server| *server != addr);
        self
    }

    /// Sends a client's query (its wire bytes, under a new ID) to each server in turn until one
    /// answers, and returns that answer (whatever its response code: a server's NXDOMAIN or
    /// SERVFAIL is its answer, not a reason to ask the next).
    pub async fn forward(&self, query: &[u8]) -> Result<Message, ForwardError> {
        let question = Message::from_vec(query)
            .map_err(|e| ForwardError::BadQuery(e.to_string()))?
            .queries
            .into_iter()
            .next()
            .ok_or_else(|| ForwardError::BadQuery("no question".to_owned()))?;
        let mut last_error = ForwardError::NoUpstream;
        for server in &self.servers {
            match self.exchange(*server, query, &question).await {
                Ok(answer) => return Ok(answer),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    /// Asks the servers for `name`/`qtype` (recursion desired), for an ExternalName's target.
    pub async fn lookup(&self, name: &Name, qtype: RecordType) -> Result<Message, ForwardError> {
        let mut message = Message::query();
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(name.clone(), qtype));
        let bytes = message.to_vec().map_err(|e| ForwardError::BadQuery(e.to_string()))?;
        self.forward(&bytes).await
    }

    async fn exchange(&self, upstream: SocketAddr, query: &[u8], question: &Query) -> Result<Message, ForwardError> {
        let id: u16 = rand::random();
        let mut query = query.to_vec();
        query[..2].copy_from_slice(&id.to_be_bytes());
        let io_error = |source| ForwardError::Io { upstream, source };
        let timeout = |_| ForwardError::Timeout { upstream, timeout: self.timeout };
        let answer = tokio::time::timeout(self.timeout, udp_exchange(upstream, &query, id, question))
            .await
            .map_err(timeout)?
            .map_err(io_error)?;
        let answer = if answer.metadata.truncation {
            tokio::time::timeout(self.timeout, tcp_exchange(upstream, &query))
                .await
                .map_err(timeout)?
                .map_err(io_error)?
        } else {
            answer
        };
        if answer.metadata.id != id || !same_question(&answer, question) {
            return Err(ForwardError::BadAnswer {
                upstream,
                reason: "its ID or question differs from the query's".to_owned(),
            });
        }
        Ok(answer)
    }
}

fn same_question(answer: &Message, question: &Query) -> bool {
    answer.queries.first().is_some_and(|q| q.name() == question.name() && q.query_type() == question.query_type())
}

/// One UDP exchange; datagrams that are not the answer (another ID or question, garbage) are
/// ignored, as a spoofing attempt would be.
async fn udp_exchange(upstream: SocketAddr, query: &[u8], id: u16, question: &Query) -> io::Result<Message> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buffer = vec![0; MAX_MESSAGE];
    loop {
        let len = socket.recv(&mut buffer).await?;
        if let Ok(answer) = Message::from_vec(&buffer[..len])
            && answer.metadata.id == id
            && same_question(&answer, question)
        {
            return Ok(answer);
        }
    }
}

/// One TCP exchange: a 2-byte length, then the message, each way (RFC 1035 4.2.2).
async fn tcp_exchange(upstream: SocketAddr, query: &[u8]) -> io::Result<Message> {
    let mut stream = TcpStream::connect(upstream).await?;
    let len = u16::try_from(query.len()).map_err(io::Error::other)?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await?;
    let mut answer = vec![0; usize::from(len)];
    stream.read_exact(&mut answer).await?;
    Message::from_vec(&answer).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_of_resolv_conf() {
        let text = "# generated\nsearch example.com\nnameserver 10.255.255.53\n\
                    nameserver  ::1 \noptions ndots:5\nnameserver fe80::1%eth0\nnameserver\n\
                    ; nameserver 1.1.1.1\n";
        assert_eq!(nameservers(text), vec!["10.255.255.53:53".parse().unwrap(), "[::1]:53".parse().unwrap()]);
    }

    #[test]
    fn a_resolver_never_forwards_to_itself() {
        let me: SocketAddr = "127.0.0.53:53".parse().unwrap();
        let other: SocketAddr = "10.0.0.2:53".parse().unwrap();
        let upstreams = Upstreams::new(vec![me, other], Duration::from_secs(1)).without(me);
        assert_eq!(upstreams.servers(), &[other]);
    }
}
