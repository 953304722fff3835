//! A minimal SPDY/3.1 *client* session, enough to drive a runtime's streaming server (the Go
//! `moby/spdystream` behind containerd's exec, attach and port-forward):
//!
//! - pure framing: [`decode`] reads one frame from a buffer, the `encode_*` functions write
//!   one; header blocks go out as zlib *stored* blocks ([`HeaderCompressor`]), which a zlib
//!   reader takes without the SPDY dictionary because the zlib header does not ask for one;
//!   the server's header blocks are skipped, never decoded;
//! - the session ([`Session::start`]): a task reads frames and reports them as [`Event`]s
//!   (answering the server's PINGs itself); a cloneable [`Session`] opens streams, sends data
//!   and half-closes streams.
//!
//! No flow control: spdystream neither sends WINDOW_UPDATE nor honours it, so windows are
//! neither kept nor announced. Data sent on a stream before its SYN_REPLY arrived is dropped by
//! spdystream, so callers wait for [`Event::Reply`] before sending.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Mutex, mpsc};

/// The protocol version every control frame carries.
pub const VERSION: u16 = 3;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// FLAG_FIN, the same bit for control and data frames: the sender's half of the stream ends.
pub const FLAG_FIN: u8 = 0x01;
/// RST_STREAM status CANCEL.
pub const STATUS_CANCEL: u32 = 5;
/// GOAWAY status OK.
pub const GOAWAY_OK: u32 = 0;

/// A frame header is eight bytes; lengths are 24 bits.
const HEADER_LEN: usize = 8;
const MAX_LENGTH: usize = 0x00ff_ffff;
/// A stored deflate block holds at most this many bytes.
const MAX_STORED_BLOCK: usize = 0xffff;
/// Data frames are cut at this size: spdystream reads a frame whole into memory.
pub const MAX_DATA_CHUNK: usize = 32 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpdyError {
    #[error("SPDY frame: {0}")]
    Malformed(String),
    #[error("SPDY session: {0}")]
    Closed(String),
}

/// One frame the server sent, as far as a client needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The server opened a stream of its own (never expected of a streaming server).
    SynStream {
        stream_id: u32,
        fin: bool,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings,
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        fin: bool,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    /// A control frame of a type SPDY/3.1 does not define; skipped.
    Unknown {
        kind: u16,
    },
}

fn word(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn malformed(what: impl Into<String>) -> SpdyError {
    SpdyError::Malformed(what.into())
}

/// Decodes the first frame of `buffer`: `Ok(None)` while it is incomplete, otherwise the frame
/// and how many bytes it took.
pub fn decode(buffer: &[u8]) -> Result<Option<(Frame, usize)>, SpdyError> {
    if buffer.len() < HEADER_LEN {
        return Ok(None);
    }
    let first = word(buffer, 0);
    let flags = buffer[4];
    let length = (word(buffer, 4) & 0x00ff_ffff) as usize;
    let total = HEADER_LEN + length;
    if buffer.len() < total {
        return Ok(None);
    }
    let payload = &buffer[HEADER_LEN..total];
    let fin = flags & FLAG_FIN != 0;
    if first & 0x8000_0000 == 0 {
        let data = Bytes::copy_from_slice(payload);
        return Ok(Some((Frame::Data { stream_id: first, fin, data }, total)));
    }
    let version = ((first >> 16) & 0x7fff) as u16;
    if version != VERSION {
        return Err(malformed(format!("version {version}, want {VERSION}")));
    }
    let kind = (first & 0xffff) as u16;
    let need = |n: usize, name: &str| {
        if payload.len() < n {
            Err(malformed(format!("{name} of {} bytes, want at least {n}", payload.len())))
        } else {
            Ok(())
        }
    };
    let stream = |at: usize| word(payload, at) & 0x7fff_ffff;
    let frame = match kind {
        TYPE_SYN_STREAM => {
            need(10, "SYN_STREAM")?;
            Frame::SynStream { stream_id: stream(0), fin }
        }
        TYPE_SYN_REPLY => {
            need(4, "SYN_REPLY")?;
            Frame::SynReply { stream_id: stream(0), fin }
        }
        TYPE_RST_STREAM => {
            need(8, "RST_STREAM")?;
            Frame::RstStream { stream_id: stream(0), status: word(payload, 4) }
        }
        TYPE_SETTINGS => Frame::Settings,
        TYPE_PING => {
            need(4, "PING")?;
            Frame::Ping { id: word(payload, 0) }
        }
        TYPE_GOAWAY => {
            need(8, "GOAWAY")?;
            Frame::GoAway { last_good_stream_id: stream(0), status: word(payload, 4) }
        }
        TYPE_HEADERS => {
            need(4, "HEADERS")?;
            Frame::Headers { stream_id: stream(0), fin }
        }
        TYPE_WINDOW_UPDATE => {
            need(8, "WINDOW_UPDATE")?;
            Frame::WindowUpdate { stream_id: stream(0), delta: word(payload, 4) & 0x7fff_ffff }
        }
        kind => Frame::Unknown { kind },
    };
    Ok(Some((frame, total)))
}

fn length_word(flags: u8, length: usize) -> Result<[u8; 4], SpdyError> {
    if length > MAX_LENGTH {
        return Err(malformed(format!("a payload of {length} bytes does not fit a frame")));
    }
    // The check above keeps the length within 24 bits.
    let length = u32::try_from(length).unwrap_or(0);
    Ok(((u32::from(flags) << 24) | length).to_be_bytes())
}

fn control_frame(kind: u16, flags: u8, payload: &[u8]) -> Result<Vec<u8>, SpdyError> {
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.extend_from_slice(&(0x8000u16 | VERSION).to_be_bytes());
    frame.extend_from_slice(&kind.to_be_bytes());
    frame.extend_from_slice(&length_word(flags, payload.len())?);
    frame.extend_from_slice(payload);
    Ok(frame)
}

/// A DATA frame; `fin` half-closes the stream (an empty frame with `fin` just closes).
pub fn encode_data(stream_id: u32, data: &[u8], fin: bool) -> Result<Vec<u8>, SpdyError> {
    let mut frame = Vec::with_capacity(HEADER_LEN + data.len());
    frame.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
    frame.extend_from_slice(&length_word(if fin { FLAG_FIN } else { 0 }, data.len())?);
    frame.extend_from_slice(data);
    Ok(frame)
}

/// A SYN_STREAM opening `stream_id` with an already compressed header block.
pub fn encode_syn_stream(stream_id: u32, compressed_headers: &[u8], fin: bool) -> Result<Vec<u8>, SpdyError> {
    let mut payload = Vec::with_capacity(10 + compressed_headers.len());
    payload.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
    // Associated-to stream 0, priority 0 (highest), slot 0.
    payload.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    payload.extend_from_slice(compressed_headers);
    control_frame(TYPE_SYN_STREAM, if fin { FLAG_FIN } else { 0 }, &payload)
}

pub fn encode_ping(id: u32) -> Result<Vec<u8>, SpdyError> {
    control_frame(TYPE_PING, 0, &id.to_be_bytes())
}

pub fn encode_rst_stream(stream_id: u32, status: u32) -> Result<Vec<u8>, SpdyError> {
    let mut payload = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
    payload.extend_from_slice(&status.to_be_bytes());
    control_frame(TYPE_RST_STREAM, 0, &payload)
}

pub fn encode_goaway(last_good_stream_id: u32, status: u32) -> Result<Vec<u8>, SpdyError> {
    let mut payload = (last_good_stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
    payload.extend_from_slice(&status.to_be_bytes());
    control_frame(TYPE_GOAWAY, 0, &payload)
}

/// The uncompressed header block: a count, then length-prefixed names and values. SPDY wants
/// names in lower case (spdystream refuses others).
pub fn header_block(headers: &[(&str, &str)]) -> Result<Vec<u8>, SpdyError> {
    let length =
        |s: &str| u32::try_from(s.len()).map_err(|_| malformed(format!("a header of {} bytes is too long", s.len())));
    let count = u32::try_from(headers.len()).map_err(|_| malformed("too many headers"))?;
    let mut block = count.to_be_bytes().to_vec();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        block.extend_from_slice(&length(&name)?.to_be_bytes());
        block.extend_from_slice(name.as_bytes());
        block.extend_from_slice(&length(value)?.to_be_bytes());
        block.extend_from_slice(value.as_bytes());
    }
    Ok(block)
}

/// The header compression of one session. SPDY keeps one zlib stream per direction for the
/// whole connection, so the first block opens it with a zlib header (no preset dictionary)
/// and every block is a run of non-final stored deflate blocks ended by an empty one, as a
/// zlib sync flush writes it.
#[derive(Debug, Default)]
pub struct HeaderCompressor {
    started: bool,
}

impl HeaderCompressor {
    pub fn compress(&mut self, block: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(block.len() + 2 + 5 * (block.len() / MAX_STORED_BLOCK + 1));
        if !self.started {
            // CMF 0x78 (deflate, 32 KiB window), FLG 0x01: no dictionary, check bits valid.
            out.extend_from_slice(&[0x78, 0x01]);
            self.started = true;
        }
        // The empty block last is zlib's sync flush: Go's inflater hands out a stored block's
        // bytes only when the next block header is read, which must not wait for the next frame.
        for chunk in block.chunks(MAX_STORED_BLOCK).chain(std::iter::once(&[][..])) {
            // The chunk size is at most 0xffff.
            let len = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
            // BFINAL 0, BTYPE 00 (stored); then LEN and its complement, little endian.
            out.push(0);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }
}

/// What the session reports of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The server accepted a stream (SYN_REPLY); `fin` if it will send nothing on it.
    Reply {
        stream_id: u32,
        fin: bool,
    },
    Data {
        stream_id: u32,
        data: Bytes,
    },
    /// The server's half of the stream ended (FLAG_FIN).
    Finished {
        stream_id: u32,
    },
    Reset {
        stream_id: u32,
        status: u32,
    },
    /// GOAWAY: no new streams; the connection ends soon.
    GoAway {
        status: u32,
    },
    /// The connection ended: cleanly (`None`) or with an error.
    Closed {
        error: Option<String>,
    },
}

/// The events one frame means to a client, and the answer it needs (a PING the server sent).
pub fn events_of(frame: Frame) -> (Vec<Event>, Option<Vec<u8>>) {
    let finished = |stream_id, fin: bool| fin.then_some(Event::Finished { stream_id });
    match frame {
        Frame::SynReply { stream_id, fin } => {
            (std::iter::once(Event::Reply { stream_id, fin }).chain(finished(stream_id, fin)).collect(), None)
        }
        Frame::Data { stream_id, fin, data } => {
            let data = (!data.is_empty()).then_some(Event::Data { stream_id, data });
            (data.into_iter().chain(finished(stream_id, fin)).collect(), None)
        }
        Frame::Headers { stream_id, fin } => (finished(stream_id, fin).into_iter().collect(), None),
        Frame::RstStream { stream_id, status } => (vec![Event::Reset { stream_id, status }], None),
        Frame::GoAway { status, .. } => (vec![Event::GoAway { status }], None),
        // Server pings have even ids; an odd one would be an answer to ours (we send none).
        Frame::Ping { id } if id % 2 == 0 => (Vec::new(), encode_ping(id).ok()),
        // A stream the server opens is refused: streaming servers never push.
        Frame::SynStream { stream_id, .. } => (Vec::new(), encode_rst_stream(stream_id, STATUS_CANCEL).ok()),
        Frame::Ping { .. } | Frame::Settings | Frame::WindowUpdate { .. } | Frame::Unknown { .. } => (Vec::new(), None),
    }
}

struct Writer<W> {
    io: W,
    compressor: HeaderCompressor,
    next_stream_id: u32,
}

/// The sending side of a session; clones share the connection.
pub struct Session<W> {
    writer: Arc<Mutex<Writer<W>>>,
}

impl<W> std::fmt::Debug for Session<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl<W> Clone for Session<W> {
    fn clone(&self) -> Self {
        Session { writer: self.writer.clone() }
    }
}

/// The write half of a split upgraded connection, the usual `W` of a [`Session`].
pub type WriteHalf<T> = tokio::io::WriteHalf<T>;

impl<T> Session<WriteHalf<T>>
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    /// Starts a client session on a connection that switched to SPDY/3.1: the frames the server
    /// sends arrive on the receiver, which ends after [`Event::Closed`].
    pub fn start(io: T) -> (Session<WriteHalf<T>>, mpsc::Receiver<Event>) {
        let (read, write) = tokio::io::split(io);
        let session = Session {
            writer: Arc::new(Mutex::new(Writer { io: write, compressor: Default::default(), next_stream_id: 1 })),
        };
        let (events, receiver) = mpsc::channel(64);
        tokio::spawn(read_frames(read, session.clone(), events));
        (session, receiver)
    }
}

impl<W: AsyncWrite + Unpin + Send> Session<W> {
    async fn write(&self, frame: &[u8]) -> Result<(), SpdyError> {
        let mut writer = self.writer.lock().await;
        writer.io.write_all(frame).await.map_err(|e| SpdyError::Closed(format!("writing a frame: {e}")))?;
        writer.io.flush().await.map_err(|e| SpdyError::Closed(format!("writing a frame: {e}")))
    }

    /// Opens a stream with these headers; returns its id. Wait for its [`Event::Reply`] before
    /// sending on it.
    pub async fn open_stream(&self, headers: &[(&str, &str)]) -> Result<u32, SpdyError> {
        let block = header_block(headers)?;
        let mut writer = self.writer.lock().await;
        let stream_id = writer.next_stream_id;
        if stream_id > 0x7fff_ffff {
            return Err(SpdyError::Closed("no stream ids left".into()));
        }
        // Compressing and sending under one lock: the zlib stream and the ids stay in order.
        let frame = encode_syn_stream(stream_id, &writer.compressor.compress(&block), false)?;
        writer.io.write_all(&frame).await.map_err(|e| SpdyError::Closed(format!("opening a stream: {e}")))?;
        writer.io.flush().await.map_err(|e| SpdyError::Closed(format!("opening a stream: {e}")))?;
        writer.next_stream_id += 2;
        Ok(stream_id)
    }

    /// Sends `data` on a stream, in frames of at most [`MAX_DATA_CHUNK`] bytes.
    pub async fn send(&self, stream_id: u32, data: &[u8]) -> Result<(), SpdyError> {
        for chunk in data.chunks(MAX_DATA_CHUNK) {
            self.write(&encode_data(stream_id, chunk, false)?).await?;
        }
        Ok(())
    }

    /// Half-closes a stream: the server reads end of file.
    pub async fn finish(&self, stream_id: u32) -> Result<(), SpdyError> {
        self.write(&encode_data(stream_id, &[], true)?).await
    }

    /// Ends the session politely (GOAWAY) and shuts the connection's write side.
    pub async fn close(&self) -> Result<(), SpdyError> {
        let frame = encode_goaway(0, GOAWAY_OK)?;
        let mut writer = self.writer.lock().await;
        let _ = writer.io.write_all(&frame).await;
        writer.io.shutdown().await.map_err(|e| SpdyError::Closed(format!("closing: {e}")))
    }
}

async fn read_frames<R, W>(mut read: R, session: Session<W>, events: mpsc::Sender<Event>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send,
{
    let mut buffer = BytesMut::with_capacity(64 * 1024);
    let error = loop {
        match decode(&buffer) {
            Ok(Some((frame, used))) => {
                buffer.advance(used);
                let (reported, answer) = events_of(frame);
                if let Some(answer) = answer
                    && let Err(error) = session.write(&answer).await
                {
                    break Some(error.to_string());
                }
                for event in reported {
                    if events.send(event).await.is_err() {
                        return;
                    }
                }
            }
            Ok(None) => match read.read_buf(&mut buffer).await {
                Ok(0) if buffer.is_empty() => break None,
                Ok(0) => break Some(format!("the connection ended inside a frame ({} bytes)", buffer.len())),
                Ok(_) => {}
                Err(error) => break Some(format!("reading: {error}")),
            },
            Err(error) => break Some(error.to_string()),
        }
    };
    let _ = events.send(Event::Closed { error }).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a zlib stream of stored blocks back, as a zlib reader would.
    fn inflate_stored(mut compressed: &[u8]) -> Vec<u8> {
        assert_eq!(&compressed[..2], &[0x78, 0x01], "a zlib header without a dictionary");
        assert_eq!((u32::from(compressed[0]) * 256 + u32::from(compressed[1])) % 31, 0, "the zlib header check bits");
        compressed = &compressed[2..];
        let mut out = Vec::new();
        while !compressed.is_empty() {
            assert_eq!(compressed[0], 0, "a non-final stored block");
            let len = u16::from_le_bytes([compressed[1], compressed[2]]);
            let nlen = u16::from_le_bytes([compressed[3], compressed[4]]);
            assert_eq!(len, !nlen);
            out.extend_from_slice(&compressed[5..5 + usize::from(len)]);
            compressed = &compressed[5 + usize::from(len)..];
        }
        out
    }

    #[test]
    fn header_blocks_are_stored_zlib_with_one_header_per_session() {
        let block = header_block(&[("streamType", "error"), ("port", "80")]).expect("a block");
        let mut want = vec![0, 0, 0, 2, 0, 0, 0, 10];
        want.extend_from_slice(b"streamtype");
        want.extend_from_slice(&[0, 0, 0, 5]);
        want.extend_from_slice(b"error");
        want.extend_from_slice(&[0, 0, 0, 4]);
        want.extend_from_slice(b"port");
        want.extend_from_slice(&[0, 0, 0, 2]);
        want.extend_from_slice(b"80");
        assert_eq!(block, want, "names are lower-cased");

        let mut compressor = HeaderCompressor::default();
        let first = compressor.compress(&block);
        let second = compressor.compress(&block);
        assert_eq!(first.len(), second.len() + 2, "only the first block carries the zlib header");
        assert_eq!(&second[second.len() - 5..], &[0, 0, 0, 0xff, 0xff], "each block ends with a sync flush");
        let mut stream = first.clone();
        stream.extend_from_slice(&second);
        assert_eq!(inflate_stored(&stream), [block.clone(), block].concat());

        let big = vec![7u8; MAX_STORED_BLOCK + 10];
        let compressed = HeaderCompressor::default().compress(&big);
        assert_eq!(inflate_stored(&compressed), big, "large blocks split into stored blocks of 64 KiB");
    }

    #[test]
    fn frames_encode_and_decode() {
        let cases: Vec<(Vec<u8>, Frame)> = vec![
            (
                encode_data(3, b"hello", false).expect("data"),
                Frame::Data { stream_id: 3, fin: false, data: Bytes::from_static(b"hello") },
            ),
            (encode_data(5, b"", true).expect("fin"), Frame::Data { stream_id: 5, fin: true, data: Bytes::new() }),
            (encode_syn_stream(7, &[1, 2, 3], false).expect("syn"), Frame::SynStream { stream_id: 7, fin: false }),
            (encode_ping(2).expect("ping"), Frame::Ping { id: 2 }),
            (encode_rst_stream(9, STATUS_CANCEL).expect("rst"), Frame::RstStream { stream_id: 9, status: 5 }),
            (encode_goaway(11, GOAWAY_OK).expect("goaway"), Frame::GoAway { last_good_stream_id: 11, status: 0 }),
        ];
        for (bytes, want) in cases {
            let (frame, used) = decode(&bytes).expect("valid").expect("complete");
            assert_eq!((frame, used), (want.clone(), bytes.len()));
            assert_eq!(decode(&bytes[..bytes.len() - 1]).expect("valid prefix"), None, "{want:?} is incomplete");
        }
        let syn = encode_syn_stream(1, &[0xaa], true).expect("syn");
        assert_eq!(&syn[..8], &[0x80, 0x03, 0x00, 0x01, 0x01, 0x00, 0x00, 11], "control bit, version 3, type 1");
    }

    #[test]
    fn server_frames_decode() {
        // As spdystream writes them: SYN_REPLY with a header block, WINDOW_UPDATE, SETTINGS.
        let reply = [0x80, 0x03, 0x00, 0x02, 0x01, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x03, 0x78, 0xbb];
        let update = [0x80, 0x03, 0x00, 0x09, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 1, 0, 0, 0x10, 0];
        let settings = [0x80, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 0];
        let mut stream = [reply.as_slice(), &update, &settings].concat();
        let mut frames = Vec::new();
        while let Some((frame, used)) = decode(&stream).expect("valid") {
            frames.push(frame);
            stream.drain(..used);
        }
        assert_eq!(
            frames,
            vec![
                Frame::SynReply { stream_id: 3, fin: true },
                Frame::WindowUpdate { stream_id: 1, delta: 4096 },
                Frame::Settings
            ]
        );
        let spdy2 = [0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 2];
        assert!(decode(&spdy2).is_err(), "another SPDY version is refused");
        let short_rst = [0x80, 0x03, 0x00, 0x03, 0, 0, 0, 4, 0, 0, 0, 1];
        assert!(decode(&short_rst).is_err(), "a truncated RST_STREAM is refused");
    }

    #[test]
    fn frames_mean_events_and_pings_are_answered() {
        let (events, answer) = events_of(Frame::SynReply { stream_id: 1, fin: true });
        assert_eq!(events, vec![Event::Reply { stream_id: 1, fin: true }, Event::Finished { stream_id: 1 }]);
        assert_eq!(answer, None);
        let (events, _) = events_of(Frame::Data { stream_id: 3, fin: true, data: Bytes::from_static(b"x") });
        assert_eq!(
            events,
            vec![Event::Data { stream_id: 3, data: Bytes::from_static(b"x") }, Event::Finished { stream_id: 3 }]
        );
        let (events, _) = events_of(Frame::Data { stream_id: 3, fin: false, data: Bytes::new() });
        assert!(events.is_empty(), "an empty frame without FIN says nothing");
        assert_eq!(events_of(Frame::Ping { id: 4 }).1, Some(encode_ping(4).expect("ping")), "the server's ping echoed");
        assert_eq!(events_of(Frame::Ping { id: 5 }).1, None, "an odd ping id is a client's own");
        assert_eq!(
            events_of(Frame::SynStream { stream_id: 2, fin: false }).1,
            Some(encode_rst_stream(2, STATUS_CANCEL).expect("rst")),
            "server pushes are refused"
        );
    }

    #[tokio::test]
    async fn a_session_opens_streams_in_order_and_reports_the_server() {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        let (session, mut events) = Session::start(client);
        assert_eq!(session.open_stream(&[("streamtype", "error")]).await, Ok(1));
        assert_eq!(session.open_stream(&[("streamtype", "stdin")]).await, Ok(3));
        session.send(3, b"input").await.expect("sent");
        session.finish(3).await.expect("finished");

        let mut written = vec![0u8; 4096];
        let mut received = Vec::new();
        let mut frames = Vec::new();
        while frames.len() < 4 {
            let n = server.read(&mut written).await.expect("read");
            received.extend_from_slice(&written[..n]);
            while let Some((frame, used)) = decode(&received).expect("valid") {
                frames.push(frame);
                received.drain(..used);
            }
        }
        assert_eq!(
            frames,
            vec![
                Frame::SynStream { stream_id: 1, fin: false },
                Frame::SynStream { stream_id: 3, fin: false },
                Frame::Data { stream_id: 3, fin: false, data: Bytes::from_static(b"input") },
                Frame::Data { stream_id: 3, fin: true, data: Bytes::new() },
            ]
        );

        let mut answer = encode_ping(2).expect("ping");
        answer.extend_from_slice(&[0x80, 0x03, 0x00, 0x02, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01]);
        answer.extend_from_slice(&encode_data(1, b"status", true).expect("data"));
        server.write_all(&answer).await.expect("written");
        let mut seen = Vec::new();
        while seen.len() < 3 {
            seen.push(events.recv().await.expect("an event"));
        }
        assert_eq!(
            seen,
            vec![
                Event::Reply { stream_id: 1, fin: false },
                Event::Data { stream_id: 1, data: Bytes::from_static(b"status") },
                Event::Finished { stream_id: 1 },
            ]
        );
        let mut pong = vec![0u8; 12];
        server.read_exact(&mut pong).await.expect("the ping answered");
        assert_eq!(pong, encode_ping(2).expect("ping"));
        drop(server);
        assert_eq!(events.recv().await, Some(Event::Closed { error: None }));
        assert_eq!(events.recv().await, None);
    }
}
