//! One connection's state: frames read and checked, streams opened and closed, both
//! directions' flow control, and the bytes to write. Everything happens in the connection's
//! task; the service's futures and the response bodies are polled from it.

use super::body::{self, Credit};
use super::frame::{self, Head, Reason};
use super::hpack;
use super::request;
use bytes::{Buf, Bytes, BytesMut};
use std::sync::Arc;

mod send;

/// What this server announces: its stream window, its connection window (raised from the
/// protocol's 64 KB at once), the streams a client may have open.
pub const STREAM_WINDOW: u32 = 1024 * 1024;
pub const CONNECTION_WINDOW: u32 = 1024 * 1024;
pub const MAX_STREAMS: u32 = 200;
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

pub enum Sending {
    /// The service has not answered yet.
    Waiting,
    /// The response body, and what was read of it but not sent for want of window.
    Body(crate::Body, Option<Bytes>),
}

pub struct Stream {
    /// The request body's queue, while the client may still send on it.
    pub recv: Option<body::Shared>,
    /// `content-length` still to come, when the request gave one.
    pub expected: Option<u64>,
    pub recv_window: i64,
    /// Window read back from the body, not yet given to the client.
    pub credit: usize,
    pub send_window: i64,
    pub sending: Sending,
    /// Stops the service's future when the client resets the stream.
    pub abort: futures::future::AbortHandle,
}

impl Stream {
    /// Stops the stream's service future and breaks its request body, saying `why`.
    fn cancel(self, why: &'static str) {
        self.abort.abort();
        if let Some(queue) = self.recv {
            body::break_off(&queue, why);
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
    /// The client's preface is still to come.
    preface: bool,
    decoder: hpack::Decoder,
    block: Option<Block>,
    pub streams: crate::hash::Map<u32, Stream>,
    /// The highest stream the client opened.
    pub last_id: u32,
    /// Set once GOAWAY went out: streams past it are ignored.
    pub goaway: Option<u32>,
    pub peer_goaway: bool,
    pub got_settings: bool,
    peer_window: i64,
    pub peer_frame: usize,
    pub send_window: i64,
    recv_window: i64,
    /// Window taken back from readers, not yet given to the client.
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
    pub fn new() -> State {
        let mut out = Vec::with_capacity(1024);
        frame::settings(
            &mut out,
            &[
                (frame::MAX_CONCURRENT_STREAMS, MAX_STREAMS),
                (frame::INITIAL_WINDOW_SIZE, STREAM_WINDOW),
                (frame::MAX_HEADER_LIST_SIZE, crate::transport::h1::MAX_HEAD as u32),
                (frame::ENABLE_PUSH, 0),
            ],
        );
        frame::window_update(&mut out, 0, CONNECTION_WINDOW - frame::DEFAULT_WINDOW as u32);
        State {
            preface: true,
            decoder: hpack::Decoder::default(),
            block: None,
            streams: Default::default(),
            last_id: 0,
            goaway: None,
            peer_goaway: false,
            got_settings: false,
            peer_window: frame::DEFAULT_WINDOW,
            peer_frame: frame::DEFAULT_FRAME,
            send_window: frame::DEFAULT_WINDOW,
            recv_window: i64::from(CONNECTION_WINDOW),
            conn_credit: 0,
            credit: Arc::default(),
            out,
            resets: 0,
            empties: 0,
            second: crate::clock::now(),
            ping_out: false,
        }
    }

    /// Reads the frames whole in `buf` (the client's preface first), leaving a partial one;
    /// new requests go to `events`.
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
            frame::GOAWAY => {
                if head.stream != 0 || head.len < 8 {
                    return fault(Reason::PROTOCOL_ERROR, "a malformed GOAWAY");
                }
                self.peer_goaway = true;
                Ok(())
            }
            frame::PRIORITY => match (head.stream, head.len) {
                (0, _) => fault(Reason::PROTOCOL_ERROR, "PRIORITY on stream 0"),
                (_, 5) => Ok(()),
                _ => fault(Reason::FRAME_SIZE_ERROR, "a PRIORITY frame not 5 bytes long"),
            },
            frame::PUSH_PROMISE => fault(Reason::PROTOCOL_ERROR, "PUSH_PROMISE from a client"),
            // Unknown frame types are ignored (RFC 9113 §4.1).
            _ => Ok(()),
        }
    }

    /// Counts one flood event of a kind; too many in a second end the connection.
    fn flood(&mut self, resets: bool) -> Res<()> {
        let now = crate::clock::now();
        if now.duration_since(self.second) >= std::time::Duration::from_secs(1) {
            (self.second, self.resets, self.empties) = (now, 0, 0);
        }
        let (count, limit) = match resets {
            true => (&mut self.resets, MAX_RESETS_PER_SECOND),
            false => (&mut self.empties, MAX_EMPTY_PER_SECOND),
        };
        *count += 1;
        match *count > limit {
            true => fault(Reason::ENHANCE_YOUR_CALM, "too many resets or empty frames"),
            false => Ok(()),
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
        let refused = match &s.recv {
            None => Some(Reason::STREAM_CLOSED),
            Some(_) if len > s.recv_window => Some(Reason::FLOW_CONTROL_ERROR),
            Some(_) => {
                s.recv_window -= len;
                overruns(&mut s.expected, data.len() as u64, end).then_some(Reason::PROTOCOL_ERROR)
            }
        };
        if let Some(reason) = refused {
            self.give_back(0, head.len);
            return self.reset(id, reason);
        }
        let queue = s.recv.as_ref().expect("refused above when closed");
        // Only the stream holds the queue: the service dropped the body.
        let unread = Arc::strong_count(queue) == 1;
        let back = padding + if unread { data.len() } else { 0 };
        if !unread && !data.is_empty() {
            body::push(queue, data);
        }
        if end {
            body::end(queue, None);
            s.recv = None;
        }
        // Padding, and bytes nobody will read, come back at once.
        self.give_back(id, back);
        Ok(())
    }

    fn headers(&mut self, head: Head, payload: Bytes, events: &mut Vec<Event>) -> Res<()> {
        if head.stream == 0 || head.stream.is_multiple_of(2) {
            return fault(Reason::PROTOCOL_ERROR, "HEADERS on a stream a client cannot open");
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

    /// A whole header block on stream `id`: a new request, or a request's trailers.
    fn block(&mut self, id: u32, end_stream: bool, bytes: &[u8], events: &mut Vec<Event>) -> Res<()> {
        let trailers = id <= self.last_id;
        let mut fields = request::Head::default();
        let decoded =
            self.decoder.decode(bytes, |name, value, sensitive| fields.field(name, value, sensitive, trailers));
        decoded.map_err(|m| Fault(Reason::COMPRESSION_ERROR, m.0))?;
        if trailers {
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
            if let Some(queue) = stream.recv.take() {
                body::end(&queue, Some(map));
            }
            return Ok(());
        }
        self.last_id = id;
        if self.goaway.is_some_and(|last| id > last) {
            return Ok(());
        }
        if self.streams.len() >= MAX_STREAMS as usize {
            return self.refuse(id, Reason::REFUSED_STREAM);
        }
        let too_large = fields.size > crate::transport::h1::MAX_HEAD;
        let (mut parts, length) = match fields.request() {
            Ok(made) => made,
            Err(why) => {
                tracing::debug!(stream = id, why, "malformed HTTP/2 request");
                return self.refuse(id, Reason::PROTOCOL_ERROR);
            }
        };
        let end = end_stream;
        if end && length.is_some_and(|n| n > 0) {
            return self.refuse(id, Reason::PROTOCOL_ERROR);
        }
        let queue = body::Shared::default();
        if end {
            body::end(&queue, None);
        }
        let (abort, registration) = futures::future::AbortHandle::new_pair();
        let stream = Stream {
            recv: (!end).then(|| queue.clone()),
            expected: length,
            recv_window: i64::from(STREAM_WINDOW),
            credit: 0,
            send_window: self.peer_window,
            sending: Sending::Waiting,
            abort,
        };
        self.streams.insert(id, stream);
        // What the proxy's HTTP/1.1 server checks as it reads a head, and its answers.
        let checked = match too_large {
            true => Err(crate::transport::h1::Refused::HEADERS_TOO_LARGE),
            false => crate::transport::h1::check_parsed(&mut parts),
        };
        if let Err(refused) = checked {
            events.push(Event::Refused(id, crate::transport::h1::refusal(refused, http::Version::HTTP_2)));
            return Ok(());
        }
        let body = body::Body { id, queue, credit: self.credit.clone(), length };
        use http_body_util::BodyExt;
        let req = http::Request::from_parts(parts, body.boxed_unsync());
        events.push(Event::Request(id, req, registration));
        Ok(())
    }

    fn settings(&mut self, head: Head, payload: &[u8]) -> Res<()> {
        if head.stream != 0 {
            return fault(Reason::PROTOCOL_ERROR, "SETTINGS on a stream");
        }
        if head.flags & frame::ACK != 0 {
            return match head.len {
                0 => Ok(()),
                _ => fault(Reason::FRAME_SIZE_ERROR, "a SETTINGS ACK with a payload"),
            };
        }
        if !head.len.is_multiple_of(6) {
            return fault(Reason::FRAME_SIZE_ERROR, "SETTINGS not a multiple of 6 bytes");
        }
        for setting in payload.chunks(6) {
            let id = u16::from_be_bytes([setting[0], setting[1]]);
            let value = u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
            match id {
                frame::ENABLE_PUSH if value > 1 => return fault(Reason::PROTOCOL_ERROR, "ENABLE_PUSH not 0 or 1"),
                frame::INITIAL_WINDOW_SIZE => {
                    let value = i64::from(value);
                    if value > frame::MAX_WINDOW {
                        return fault(Reason::FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE too large");
                    }
                    let delta = value - self.peer_window;
                    self.peer_window = value;
                    for s in self.streams.values_mut() {
                        s.send_window += delta;
                        if s.send_window > frame::MAX_WINDOW {
                            return fault(Reason::FLOW_CONTROL_ERROR, "a stream's window too large");
                        }
                    }
                }
                frame::MAX_FRAME_SIZE => {
                    if !(16_384..=16_777_215).contains(&value) {
                        return fault(Reason::PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range");
                    }
                    self.peer_frame = value as usize;
                }
                _ => {}
            }
        }
        self.got_settings = true;
        frame::head(&mut self.out, 0, frame::SETTINGS, frame::ACK, 0);
        Ok(())
    }

    fn window_update(&mut self, head: Head, payload: &[u8]) -> Res<()> {
        if head.len != 4 {
            return fault(Reason::FRAME_SIZE_ERROR, "a WINDOW_UPDATE not 4 bytes long");
        }
        let increment = i64::from(u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & 0x7fff_ffff);
        if head.stream == 0 {
            if increment == 0 {
                return fault(Reason::PROTOCOL_ERROR, "a connection WINDOW_UPDATE of 0");
            }
            self.send_window += increment;
            if self.send_window > frame::MAX_WINDOW {
                return fault(Reason::FLOW_CONTROL_ERROR, "the connection's window too large");
            }
            return Ok(());
        }
        if head.stream > self.last_id {
            return fault(Reason::PROTOCOL_ERROR, "WINDOW_UPDATE on a stream never opened");
        }
        let Some(stream) = self.streams.get_mut(&head.stream) else { return Ok(()) };
        stream.send_window += increment;
        if increment == 0 {
            return self.reset(head.stream, Reason::PROTOCOL_ERROR);
        }
        if stream.send_window > frame::MAX_WINDOW {
            return self.reset(head.stream, Reason::FLOW_CONTROL_ERROR);
        }
        Ok(())
    }

    fn rst_stream(&mut self, head: Head, _payload: &[u8]) -> Res<()> {
        if head.stream == 0 {
            return fault(Reason::PROTOCOL_ERROR, "RST_STREAM on stream 0");
        }
        if head.len != 4 {
            return fault(Reason::FRAME_SIZE_ERROR, "a RST_STREAM not 4 bytes long");
        }
        if head.stream > self.last_id {
            return fault(Reason::PROTOCOL_ERROR, "RST_STREAM on a stream never opened");
        }
        if let Some(stream) = self.streams.remove(&head.stream) {
            stream.cancel("the client reset the stream");
            self.flood(true)?;
        }
        Ok(())
    }

    fn ping(&mut self, head: Head, payload: &[u8]) -> Res<()> {
        if head.stream != 0 {
            return fault(Reason::PROTOCOL_ERROR, "PING on a stream");
        }
        let Ok(data) = <&[u8; 8]>::try_from(payload) else {
            return fault(Reason::FRAME_SIZE_ERROR, "a PING not 8 bytes long");
        };
        match head.flags & frame::ACK {
            0 => frame::ping(&mut self.out, frame::ACK, data),
            _ => self.ping_out = false,
        }
        Ok(())
    }

    /// Resets a stream of ours (a stream error): the service's future stops, the body breaks.
    pub fn reset(&mut self, id: u32, reason: Reason) -> Res<()> {
        frame::rst_stream(&mut self.out, id, reason);
        if let Some(stream) = self.streams.remove(&id) {
            stream.cancel("the stream was reset");
        }
        Ok(())
    }

    /// Resets a stream before it is one: its head was decoded (the table stays in step), and
    /// nothing else is kept.
    fn refuse(&mut self, id: u32, reason: Reason) -> Res<()> {
        frame::rst_stream(&mut self.out, id, reason);
        Ok(())
    }

    /// Window that readers took (or nobody will), given back once enough has gathered.
    fn give_back(&mut self, stream: u32, n: usize) {
        if n == 0 {
            return;
        }
        if stream != 0
            && let Some(s) = self.streams.get_mut(&stream)
            && s.recv.is_some()
        {
            s.credit += n;
            if s.credit >= CREDIT_STEP {
                s.recv_window += s.credit as i64;
                frame::window_update(&mut self.out, stream, s.credit as u32);
                s.credit = 0;
            }
        }
        self.conn_credit += n;
        if self.conn_credit >= CREDIT_STEP {
            self.recv_window += self.conn_credit as i64;
            frame::window_update(&mut self.out, 0, self.conn_credit as u32);
            self.conn_credit = 0;
        }
    }

    /// Gives back the window the request bodies' readers took since last asked.
    pub fn credit(&mut self) {
        let taken = std::mem::take(&mut *self.credit.taken.lock().unwrap_or_else(|e| e.into_inner()));
        for (stream, n) in taken {
            self.give_back(stream, n);
        }
    }

    /// A graceful shutdown: GOAWAY naming the last stream opened, which is served with those
    /// before it; streams opened after are ignored.
    pub fn shutdown(&mut self) {
        self.goaway = Some(self.last_id);
        frame::goaway(&mut self.out, self.last_id, Reason::NO_ERROR);
    }

    /// GOAWAY for a connection error; the last stream processed is the last opened.
    pub fn fail(&mut self, fault: &Fault) {
        frame::goaway(&mut self.out, self.last_id, fault.0);
        for (_, stream) in std::mem::take(&mut self.streams) {
            stream.cancel(fault.1);
        }
    }
}
