//! Chunked bodies (RFC 9112 §7.1): decoded from an upstream, the last chunk written out.

use super::*;
use bytes::{Buf, BytesMut};
use http::HeaderMap;

/// Where a chunked body's decoder stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Chunked {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk, this many bytes still to come, then CRLF.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
    Done,
}

/// What the decoder took off the buffer.
#[derive(Debug, PartialEq)]
pub enum Piece {
    Data(Bytes),
    Trailers(HeaderMap),
    End,
}

/// Decodes what it can from `buf`. `Ok(None)`: more bytes are needed.
pub fn decode_chunked(buf: &mut BytesMut, state: &mut Chunked) -> Result<Option<Piece>, WireError> {
    loop {
        match *state {
            Chunked::Size => {
                let Some(line) = take_line(buf)? else { return Ok(None) };
                let size = chunk_size(&line).ok_or(WireError::Chunk)?;
                *state = if size == 0 { Chunked::Trailers } else { Chunked::Data(size) };
            }
            Chunked::Data(left) => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let n = (buf.len() as u64).min(left) as usize;
                let data = buf.split_to(n).freeze();
                *state = if n as u64 == left { Chunked::DataEnd } else { Chunked::Data(left - n as u64) };
                return Ok(Some(Piece::Data(data)));
            }
            Chunked::DataEnd => {
                let Some(line) = take_line(buf)? else { return Ok(None) };
                if !line.is_empty() {
                    return Err(WireError::Chunk);
                }
                *state = Chunked::Size;
            }
            Chunked::Trailers => {
                // The whole trailer section at once: it is small, and a frame carries it whole.
                let end = if buf.starts_with(b"\r\n") { Some(2) } else { find(buf, b"\r\n\r\n").map(|i| i + 4) };
                let Some(end) = end else {
                    if buf.len() > MAX_HEAD {
                        return Err(WireError::HeadTooLarge);
                    }
                    return Ok(None);
                };
                let section = buf.split_to(end);
                *state = Chunked::Done;
                let mut trailers = HeaderMap::new();
                for line in section[..].split(|b| *b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)) {
                    let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
                    let name = HeaderName::from_bytes(&line[..colon]).map_err(|_| WireError::Chunk)?;
                    let value =
                        HeaderValue::from_bytes(line[colon + 1..].trim_ascii()).map_err(|_| WireError::Chunk)?;
                    trailers.append(name, value);
                }
                return Ok(Some(if trailers.is_empty() { Piece::End } else { Piece::Trailers(trailers) }));
            }
            Chunked::Done => return Ok(Some(Piece::End)),
        }
    }
}

/// A chunk-size line's size (RFC 9112 §7.1): hex digits only (no sign, no space before), that
/// fit a u64, then optional spaces or tabs and extensions, which are ignored.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().position(|b| !b.is_ascii_hexdigit()).unwrap_or(line.len());
    if digits == 0 || digits > 16 {
        return None;
    }
    let rest = &line[digits..];
    let spaces = rest.iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
    if !matches!(rest.get(spaces), None | Some(b';')) {
        return None;
    }
    line[..digits].iter().try_fold(0u64, |n, b| Some(n << 4 | u64::from((*b as char).to_digit(16)?)))
}

/// A CRLF-terminated line off the front of `buf`, without its CRLF.
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, WireError> {
    match find(buf, b"\r\n") {
        Some(i) => {
            let line = buf.split_to(i);
            buf.advance(2);
            Ok(Some(line))
        }
        // A chunk-size line is short; a long run without CRLF is not HTTP.
        None if buf.len() > 1024 => Err(WireError::Chunk),
        None => Ok(None),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The last chunk, with the trailers when the client takes them (`TE: trailers`).
pub fn last_chunk(trailers: Option<&HeaderMap>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        header_line(name.as_str().as_bytes(), value.as_bytes(), out);
    }
    out.extend_from_slice(b"\r\n");
}
