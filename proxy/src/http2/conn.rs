//! One connection's state, as a server or as a client: frames read and checked, streams opened
//! and closed, both directions' flow control, and the bytes to write. Everything happens in
//! the connection's task, which also polls the bodies it sends (a server's responses, a
//! client's requests). What differs by role lives in `accept` (a server's streams) and `open`
//! (a client's).

use super::body::{self, Credit};
use super::frame::{self, Head, Reason};
use super::hpack;
use bytes::{Buf, Bytes, BytesMut};
use std::sync::Arc;

mod accept;
mod control;
pub mod open;
mod send;

/// What the server announces: its stream window, its connection window (raised from the
/// protocol's 64 KB at once), the streams a client may have open.
pub const STREAM_WINDOW: u32 = 1024 * 1024;
pub const CONNECTION_WINDOW: u32 = 1024 * 1024;
pub const MAX_STREAMS: u32 = 200;
/// What the client announces, as hyper's client did: room for a fast upstream on a busy link.
const CLIENT_STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CLIENT_CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;
/// Window handed back once a reader took this much of it: fewer WINDOW_UPDATE frames.
const CREDIT_STEP: usize = 64 * 1024;
/// A header block this large (in frames, before decoding) ends the connection: CONTINUATION
/// floods (CVE-2024-27316) stop here.
const MAX_BLOCK: usize = 4 * crate::transport::h1::MAX_HEAD;
/// Streams a client may reset, and empty DATA frames it may send, within a second (rapid
/// reset, CVE-2023-44487; empty-frame floods).
const MAX_RESETS_PER_SECOND: u32 = 400;
const MAX_EMPTY_PER_SECOND: u32 = 1000;

/// Counts `n` bytes against a `content-length` still to come: whether they break it (more
/// than announced, or fewer once the stream ends).
fn overruns(expected: &mut Option<u64>, n: u64, end: bool) -> bool {
    let Some(left) = expected else { return false };
    if n > *left {
        return true;
    }
    *left -= n;
    end && *left > 0
}

/// A connection error: GOAWAY with this reason, then close.
#[derive(Debug)]
pub struct Fault(pub Reason, pub &'static str);

type Res<T> = Result<T, Fault>;

fn fault<T>(reason: Reason, why: &'static str) -> Res<T> {
    Err(Fault(reason, why))
}

/// Which end of the connection this is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    Server,
    Client,
}

pub enum Sending {
    /// A server's service has not answered yet.
    Waiting,
    /// The body being sent, and what was read of it but not sent for want of window.
    Body(crate::Body, Option<Bytes>),
    /// A client's request is sent; its response is still coming.
    Done,
}

/// Why a stream ended before its exchange did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    /// The peer reset it with this reason.
    Reset(Reason),
    /// The peer did not process it (REFUSED_STREAM, or past its GOAWAY): safe to send again.
    Refused,
    /// The body this end was sending failed.
    Body,
    /// The stream broke the protocol, or the connection ended, for this reason.
    Other(&'static str),
}

impl Broken {
    pub fn why(self) -> &'static str {
        match self {
            Broken::Reset(Reason::CANCEL) => "the peer cancelled the stream",
            Broken::Reset(_) => "the peer reset the stream",
            Broken::Refused => "the peer refused the stream unprocessed",
            Broken::Body => "the body being sent failed",
            Broken::Other(why) => why,
        }
    }
}

/// Who waits on a stream beyond the connection.
pub enum Waiter {
    /// A server's service, whose future stops when the stream does.
    Service(futures::future::AbortHandle),
    /// A client's caller, until the final response head reaches it; whether its request was
    /// HEAD.
    Caller(Option<(open::Answer, bool)>),
}

pub struct Stream {
    /// The queue of the body being received (a server's request, a client's response), while
    /// the peer may still send on it.
    pub recv: Option<body::Shared>,
    /// `content-length` still to come, when the head gave one.
    pub expected: Option<u64>,
    pub recv_window: i64,
    /// Window read back from the body, not yet given to the peer.
    pub credit: usize,
    pub send_window: i64,
    pub sending: Sending,
    pub waiter: Waiter,
}

impl Stream {
    /// Stops whoever waits on the stream and breaks the body being received, saying why.
    fn cancel(self, broken: Broken) {
        match self.waiter {
            Waiter::Service(abort) => abort.abort(),
            Waiter::Caller(Some((answer, _))) => answer.fail(broken),
            Waiter::Caller(None) => {}
        }
        if let Some(queue) = self.recv {
            body::break_off(&queue, broken.why());
        }
    }
}

/// A header block being received, across CONTINUATION frames.
struct Block {
    stream: u32,
    end_stream: bool,
    bytes: Vec<u8>,
}

/// What a frame asks of the connection beyond its own state.
pub enum Event {
    /// A new request, to hand to the service; its future stops when the stream does.
    Request(u32, http::Request<crate::ReqBody>, futures::future::AbortRegistration),
    /// A new stream's head was malformed or refused: answer it with this response.
    Refused(u32, http::Response<crate::Body>),
}

pub struct State {
    pub role: Role,
    /// A server's: the client's preface is still to come.
    preface: bool,
    decoder: hpack::Decoder,
    block: Option<Block>,
    pub streams: crate::hash::Map<u32, Stream>,
    /// The highest stream opened (by the client, whichever end this is).
    pub last_id: u32,
    /// Set once GOAWAY went out: streams past it are ignored.
    pub goaway: Option<u32>,
    /// The last stream the peer's GOAWAY said it would process.
    pub peer_goaway: Option<u32>,
    pub got_settings: bool,
    peer_window: i64,
    pub peer_frame: usize,
    /// The streams the peer lets this end have open (a client's limit).
    pub peer_max_streams: usize,
    pub send_window: i64,
    recv_window: i64,
    /// Window taken back from readers, not yet given to the peer.
    conn_credit: usize,
    pub credit: Arc<Credit>,
    pub out: Vec<u8>,
    /// Rapid resets and empty frames in the current second.
    resets: u32,
    empties: u32,
    second: std::time::Instant,
    /// A keep-alive ping awaiting its answer.
    pub ping_out: bool,
}

impl State {
    /// A connection's state, with what this end says first (a client's preface, then
    /// SETTINGS and the connection's window) ready to write.
    pub fn new(role: Role) -> State {
        let mut out = Vec::with_capacity(1024);
        let head_limit = crate::transport::h1::MAX_HEAD as u32;
        let window = match role {
            Role::Server => {
                frame::settings(
                    &mut out,
                    &[
                        (frame::MAX_CONCURRENT_STREAMS, MAX_STREAMS),
                        (frame::INITIAL_WINDOW_SIZE, STREAM_WINDOW),
                        (frame::MAX_HEADER_LIST_SIZE, head_limit),
                        (frame::ENABLE_PUSH, 0),
                    ],
                );
                CONNECTION_WINDOW
            }
            Role::Client => {
                out.extend_from_slice(frame::PREFACE);
                frame::settings(
                    &mut out,
                    &[
                        (frame::ENABLE_PUSH, 0),
                        (frame::INITIAL_WINDOW_SIZE, CLIENT_STREAM_WINDOW),
                        (frame::MAX_HEADER_LIST_SIZE, head_limit),
                    ],
                );
                CLIENT_CONNECTION_WINDOW
            }
        };
        frame::window_update(&mut out, 0, window - frame::DEFAULT_WINDOW as u32);
        State {
            role,
            preface: role == Role::Server,
            decoder: hpack::Decoder::default(),
            block: None,
            streams: Default::default(),
            last_id: 0,
            goaway: None,
            peer_goaway: None,
            got_settings: false,
            peer_window: frame::DEFAULT_WINDOW,
            peer_frame: frame::DEFAULT_FRAME,
            peer_max_streams: usize::MAX,
            send_window: frame::DEFAULT_WINDOW,
            recv_window: i64::from(window),
            conn_credit: 0,
            credit: Arc::default(),
            out,
            resets: 0,
            empties: 0,
            second: crate::clock::now(),
            ping_out: false,
        }
    }

    /// Reads the frames whole in `buf` (a client's preface first), leaving a partial one; a
    /// server's new requests go to `events`.
    pub fn read(&mut self, buf: &mut BytesMut, events: &mut Vec<Event>) -> Res<()> {
        if self.preface {
            let n = buf.len().min(frame::PREFACE.len());
            if buf[..n] != frame::PREFACE[..n] {
                return fault(Reason::PROTOCOL_ERROR, "no HTTP/2 preface");
            }
            if n < frame::PREFACE.len() {
                return Ok(());
            }
            buf.advance(n);
            self.preface = false;
        }
        while buf.len() >= 9 {
            let head = Head::parse(&buf[..9]);
            if head.len > frame::DEFAULT_FRAME {
                return fault(Reason::FRAME_SIZE_ERROR, "a frame larger than SETTINGS_MAX_FRAME_SIZE");
            }
            if buf.len() < 9 + head.len {
                buf.reserve(9 + head.len - buf.len());
                break;
            }
            buf.advance(9);
            let payload = buf.split_to(head.len).freeze();
            self.frame(head, payload, events)?;
        }
        Ok(())
    }

    fn frame(&mut self, head: Head, payload: Bytes, events: &mut Vec<Event>) -> Res<()> {
        if !self.got_settings && head.kind != frame::SETTINGS {
            return fault(Reason::PROTOCOL_ERROR, "the first frame was not SETTINGS");
        }
        if self.block.is_some() && head.kind != frame::CONTINUATION {
            return fault(Reason::PROTOCOL_ERROR, "a frame inside a header block");
        }
        match head.kind {
            frame::DATA => self.data(head, payload),
            frame::HEADERS => self.headers(head, payload, events),
            frame::CONTINUATION => self.continuation(head, payload, events),
            frame::SETTINGS => self.settings(head, &payload),
            frame::WINDOW_UPDATE => self.window_update(head, &payload),
            frame::RST_STREAM => self.rst_stream(head, &payload),
            frame::PING => self.ping(head, &payload),
            frame::GOAWAY => self.peer_goaway(head, &payload),
            frame::PRIORITY => match (head.stream, head.len) {
                (0, _) => fault(Reason::PROTOCOL_ERROR, "PRIORITY on stream 0"),
                (_, 5) => Ok(()),
                _ => fault(Reason::FRAME_SIZE_ERROR, "a PRIORITY frame not 5 bytes long"),
            },
            // A client gets none: it turned push off.
            frame::PUSH_PROMISE => fault(Reason::PROTOCOL_ERROR, "PUSH_PROMISE, which this end does not take"),
            // Unknown frame types are ignored (RFC 9113 §4.1).
            _ => Ok(()),
        }
    }

    /// A frame's payload without its padding (PADDED), and the padding's length.
    fn unpad(head: &Head, mut payload: Bytes) -> Res<(Bytes, usize)> {
        if head.flags & frame::PADDED == 0 {
            return Ok((payload, 0));
        }
        let Some(&pad) = payload.first() else { return fault(Reason::FRAME_SIZE_ERROR, "padding past the frame") };
        let pad = usize::from(pad);
        if pad + 1 > payload.len() {
            return fault(Reason::PROTOCOL_ERROR, "padding past the frame");
        }
        payload.advance(1);
        payload.truncate(payload.len() - pad);
        Ok((payload, pad + 1))
    }

    fn data(&mut self, head: Head, payload: Bytes) -> Res<()> {
        let id = head.stream;
        if id == 0 {
            return fault(Reason::PROTOCOL_ERROR, "DATA on stream 0");
        }
        if id > self.last_id {
            return fault(Reason::PROTOCOL_ERROR, "DATA on a stream never opened");
        }
        let len = head.len as i64;
        if len > self.recv_window {
            return fault(Reason::FLOW_CONTROL_ERROR, "DATA past the connection's window");
        }
        self.recv_window -= len;
        let end = head.flags & frame::END_STREAM != 0;
        if head.len == 0 && !end {
            self.flood(false)?;
        }
        let (data, padding) = Self::unpad(&head, payload)?;
        let Some(s) = self.streams.get_mut(&id) else {
            // A stream closed or reset: its bytes are dropped, their window comes back.
            self.give_back(0, head.len);
            return Ok(());
        };
        let queue = match &s.recv {
            None => Err(Reason::STREAM_CLOSED),
            // A response's DATA before its head.
            Some(_) if matches!(s.waiter, Waiter::Caller(Some(_))) => Err(Reason::PROTOCOL_ERROR),
            Some(_) if len > s.recv_window => Err(Reason::FLOW_CONTROL_ERROR),
            Some(queue) => {
                s.recv_window -= len;
                match overruns(&mut s.expected, data.len() as u64, end) {
                    true => Err(Reason::PROTOCOL_ERROR),
                    false => Ok(queue),
                }
            }
        };
        let queue = match queue {
            Ok(queue) => queue,
            Err(reason) => {
                self.give_back(0, head.len);
                return self.reset(id, reason);
            }
        };
        // Only the stream holds the queue: the service dropped the body.
        let unread = Arc::strong_count(queue) == 1;
        let back = padding + if unread { data.len() } else { 0 };
        if !unread && !data.is_empty() {
            body::push(queue, data);
        }
        if end {
            body::end(queue, None);
            self.received(id);
        }
        // Padding, and bytes nobody will read, come back at once.
        self.give_back(id, back);
        Ok(())
    }

    /// The peer ended its side of stream `id`. A server answers it still; a client's stream
    /// is done unless its request is still going, which the response's end makes moot: it is
    /// cancelled.
    fn received(&mut self, id: u32) {
        let Some(s) = self.streams.get_mut(&id) else { return };
        s.recv = None;
        if self.role == Role::Client {
            if !matches!(s.sending, Sending::Done) {
                frame::rst_stream(&mut self.out, id, Reason::CANCEL);
            }
            self.streams.remove(&id);
        }
    }

    fn headers(&mut self, head: Head, payload: Bytes, events: &mut Vec<Event>) -> Res<()> {
        if head.stream == 0 || head.stream.is_multiple_of(2) {
            return fault(Reason::PROTOCOL_ERROR, "HEADERS on a stream a client cannot open");
        }
        if self.role == Role::Client && head.stream > self.last_id {
            return fault(Reason::PROTOCOL_ERROR, "HEADERS on a stream never opened");
        }
        let (mut block, _) = Self::unpad(&head, payload)?;
        if head.flags & frame::PRIORITY_FLAG != 0 {
            if block.len() < 5 {
                return fault(Reason::FRAME_SIZE_ERROR, "a priority past the frame");
            }
            block.advance(5);
        }
        let end_stream = head.flags & frame::END_STREAM != 0;
        if head.flags & frame::END_HEADERS != 0 {
            // The whole block in one frame (the common case): decoded where it lies.
            return self.block(head.stream, end_stream, &block, events);
        }
        self.block = Some(Block { stream: head.stream, end_stream, bytes: block.to_vec() });
        Ok(())
    }

    fn continuation(&mut self, head: Head, payload: Bytes, events: &mut Vec<Event>) -> Res<()> {
        let Some(mut block) = self.block.take() else {
            return fault(Reason::PROTOCOL_ERROR, "CONTINUATION without HEADERS");
        };
        if block.stream != head.stream {
            return fault(Reason::PROTOCOL_ERROR, "CONTINUATION on another stream");
        }
        block.bytes.extend_from_slice(&payload);
        if block.bytes.len() > MAX_BLOCK {
            return fault(Reason::ENHANCE_YOUR_CALM, "a header block too large");
        }
        if head.flags & frame::END_HEADERS != 0 {
            return self.block(block.stream, block.end_stream, &block.bytes, events);
        }
        self.block = Some(block);
        Ok(())
    }

    /// A whole header block on stream `id`: a head, or trailers.
    fn block(&mut self, id: u32, end_stream: bool, bytes: &[u8], events: &mut Vec<Event>) -> Res<()> {
        match self.role {
            Role::Server => self.request_block(id, end_stream, bytes, events),
            Role::Client => self.response_block(id, end_stream, bytes),
        }
    }

    /// Decodes a header block into its fields (the table stays in step whatever they say).
    fn fields(&mut self, bytes: &[u8], trailers: bool) -> Res<super::head::Head> {
        let mut fields = super::head::Head::default();
        let decoded =
            self.decoder.decode(bytes, |name, value, sensitive| fields.field(name, value, sensitive, trailers));
        decoded.map_err(|m| Fault(Reason::COMPRESSION_ERROR, m.0))?;
        Ok(fields)
    }

    /// Trailers on a stream still receiving: they end its body.
    fn trailers(&mut self, id: u32, end_stream: bool, fields: super::head::Head) -> Res<()> {
        let Some(stream) = self.streams.get_mut(&id) else { return Ok(()) };
        if stream.recv.is_none() {
            return self.reset(id, Reason::STREAM_CLOSED);
        }
        let complete = end_stream && stream.expected.is_none_or(|left| left == 0);
        let map = match fields.trailers() {
            Ok(map) if complete => map,
            // Trailers that do not end the stream, or a body short of its length.
            _ => return self.reset(id, Reason::PROTOCOL_ERROR),
        };
        if let Some(queue) = &stream.recv {
            body::end(queue, Some(map));
        }
        self.received(id);
        Ok(())
    }
}
