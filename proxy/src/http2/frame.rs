//! HTTP/2 frames (RFC 9113 §4 and §6): the nine-byte head, the types and flags the proxy
//! reads and writes, and the writers of the frames it sends.

pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const PRIORITY: u8 = 2;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PUSH_PROMISE: u8 = 5;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;
pub const WINDOW_UPDATE: u8 = 8;
pub const CONTINUATION: u8 = 9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

/// Error codes (RFC 9113 §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reason(pub u32);

impl Reason {
    pub const NO_ERROR: Reason = Reason(0);
    pub const PROTOCOL_ERROR: Reason = Reason(1);
    pub const INTERNAL_ERROR: Reason = Reason(2);
    pub const FLOW_CONTROL_ERROR: Reason = Reason(3);
    pub const STREAM_CLOSED: Reason = Reason(5);
    pub const FRAME_SIZE_ERROR: Reason = Reason(6);
    pub const REFUSED_STREAM: Reason = Reason(7);
    pub const CANCEL: Reason = Reason(8);
    pub const COMPRESSION_ERROR: Reason = Reason(9);
    pub const ENHANCE_YOUR_CALM: Reason = Reason(11);
}

/// Settings (RFC 9113 §6.5.2).
pub const ENABLE_PUSH: u16 = 2;
pub const MAX_CONCURRENT_STREAMS: u16 = 3;
pub const INITIAL_WINDOW_SIZE: u16 = 4;
pub const MAX_FRAME_SIZE: u16 = 5;
pub const MAX_HEADER_LIST_SIZE: u16 = 6;

/// The protocol's default frame size and window, before SETTINGS say otherwise.
pub const DEFAULT_FRAME: usize = 16 * 1024;
pub const DEFAULT_WINDOW: i64 = 65_535;
/// The largest window (2^31 - 1).
pub const MAX_WINDOW: i64 = (1 << 31) - 1;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl Head {
    pub fn parse(b: &[u8]) -> Head {
        Head {
            len: (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            stream: be31(&b[5..9]),
        }
    }
}

/// The 32-bit big-endian number at the start of `b` (at least four bytes long).
pub fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A stream id or window increment: 31 bits, the reserved bit ignored.
pub fn be31(b: &[u8]) -> u32 {
    be32(b) & 0x7fff_ffff
}

pub fn head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
}

pub fn settings(out: &mut Vec<u8>, values: &[(u16, u32)]) {
    head(out, values.len() * 6, SETTINGS, 0, 0);
    for (id, value) in values {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

pub fn window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    head(out, 4, WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&increment.to_be_bytes());
}

pub fn rst_stream(out: &mut Vec<u8>, stream: u32, reason: Reason) {
    head(out, 4, RST_STREAM, 0, stream);
    out.extend_from_slice(&reason.0.to_be_bytes());
}

pub fn goaway(out: &mut Vec<u8>, last: u32, reason: Reason) {
    head(out, 8, GOAWAY, 0, 0);
    out.extend_from_slice(&last.to_be_bytes());
    out.extend_from_slice(&reason.0.to_be_bytes());
}

pub fn ping(out: &mut Vec<u8>, flags: u8, payload: &[u8; 8]) {
    head(out, 8, PING, flags, 0);
    out.extend_from_slice(payload);
}

/// A header block as HEADERS and, past `max_frame`, CONTINUATION frames.
pub fn headers(out: &mut Vec<u8>, stream: u32, block: &[u8], end_stream: bool, max_frame: usize) {
    let mut chunks = block.chunks(max_frame);
    let first = chunks.next().unwrap_or_default();
    let more = block.len() > max_frame;
    let flags = if end_stream { END_STREAM } else { 0 } | if more { 0 } else { END_HEADERS };
    head(out, first.len(), HEADERS, flags, stream);
    out.extend_from_slice(first);
    let mut rest = chunks.peekable();
    while let Some(chunk) = rest.next() {
        let last = rest.peek().is_none();
        head(out, chunk.len(), CONTINUATION, if last { END_HEADERS } else { 0 }, stream);
        out.extend_from_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_round_trips_and_the_reserved_bit_is_ignored() {
        let mut out = Vec::new();
        head(&mut out, 0x012345, DATA, END_STREAM, 7);
        assert_eq!(Head::parse(&out), Head { len: 0x012345, kind: DATA, flags: END_STREAM, stream: 7 });
        out[5] |= 0x80;
        assert_eq!(Head::parse(&out).stream, 7);
    }

    #[test]
    fn a_large_block_continues() {
        let mut out = Vec::new();
        headers(&mut out, 3, &[7; 40], true, 16);
        let first = Head::parse(&out);
        assert_eq!((first.len, first.kind, first.flags), (16, HEADERS, END_STREAM));
        let second = Head::parse(&out[25..]);
        assert_eq!((second.len, second.kind, second.flags), (16, CONTINUATION, 0));
        let third = Head::parse(&out[50..]);
        assert_eq!((third.len, third.kind, third.flags), (8, CONTINUATION, END_HEADERS));
        assert_eq!(out.len(), 3 * 9 + 40);
    }
}
