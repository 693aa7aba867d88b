//! HPACK (RFC 7541): the decoder of a client's header blocks, and the encoder of the proxy's.
//!
//! The decoder keeps the dynamic table the client fills. The encoder never adds to one: each
//! field is the static table's index when name and value are there, and otherwise a literal
//! not indexed (its name by index when the static table has it), sent without Huffman. That
//! costs a few bytes more per block than h2's encoder and a fraction of its work: h2 hashed
//! each field against its table and Huffman-coded every string, some 2,000 instructions per
//! block (`bench/README.md`, "gRPC: where the time goes").

use super::huffman;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use std::collections::VecDeque;

/// A decoded field's name: a pseudo-header, or a header.
#[derive(Clone, Debug, PartialEq)]
pub enum Name {
    Authority,
    Method,
    Path,
    Scheme,
    Status,
    /// A pseudo-header this server does not know (`:protocol` among them), by its length: the
    /// request is malformed.
    OtherPseudo(usize),
    Header(HeaderName),
}

impl Name {
    /// The name as the field carried it (an unknown pseudo-header's is not kept).
    pub fn as_str(&self) -> &str {
        match self {
            Name::Authority => ":authority",
            Name::Method => ":method",
            Name::Path => ":path",
            Name::Scheme => ":scheme",
            Name::Status => ":status",
            Name::OtherPseudo(_) => ":?",
            Name::Header(h) => h.as_str(),
        }
    }

    /// Its length in bytes, as the table and the header list's size count it.
    pub fn len(&self) -> usize {
        match self {
            Name::OtherPseudo(n) => *n,
            other => other.as_str().len(),
        }
    }
}

/// Why a block could not be decoded: a connection error (COMPRESSION_ERROR).
#[derive(Debug, PartialEq)]
pub struct Malformed(pub &'static str);

/// The size of the decoder's table this server announces (SETTINGS_HEADER_TABLE_SIZE): the
/// protocol's default.
pub const TABLE_SIZE: usize = 4096;

/// Each entry's size in the table is its name, its value and 32 (RFC 7541 §4.1).
const OVERHEAD: usize = 32;

#[derive(Clone)]
struct Entry {
    name: Name,
    value: Bytes,
}

impl Entry {
    /// Its size in the table (RFC 7541 §4.1).
    fn size(&self) -> usize {
        self.name.len() + self.value.len() + OVERHEAD
    }
}

pub struct Decoder {
    table: VecDeque<Entry>,
    size: usize,
    /// The most the client may make the table (its size updates must stay under it).
    max: usize,
    /// The most the table may hold now.
    limit: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder { table: VecDeque::new(), size: 0, max: TABLE_SIZE, limit: TABLE_SIZE }
    }
}

impl Decoder {
    /// Decodes one header block, handing each field to `field` in order.
    pub fn decode(&mut self, block: &[u8], mut field: impl FnMut(Name, Bytes, bool)) -> Result<(), Malformed> {
        let mut at = 0;
        let mut first = true;
        while at < block.len() {
            let b = block[at];
            if b & 0x80 != 0 {
                // Indexed field.
                let index = integer(block, &mut at, 7)?;
                let (name, value) = self.get(index)?;
                field(name, value, false);
            } else if b & 0xc0 == 0x40 {
                // Literal, added to the table.
                let index = integer(block, &mut at, 6)?;
                let name = self.name(block, &mut at, index)?;
                let value = string(block, &mut at)?;
                self.insert(Entry { name: name.clone(), value: value.clone() });
                field(name, value, false);
            } else if b & 0xe0 == 0x20 {
                // Dynamic table size update: only before the first field.
                if !first {
                    return Err(Malformed("table size update after a field"));
                }
                let size = integer(block, &mut at, 5)?;
                if size > self.max {
                    return Err(Malformed("table size update over the announced size"));
                }
                self.limit = size;
                self.evict(0);
                continue;
            } else {
                // Literal not added (0000) or never to be added (0001).
                let sensitive = b & 0x10 != 0;
                let index = integer(block, &mut at, 4)?;
                let name = self.name(block, &mut at, index)?;
                let value = string(block, &mut at)?;
                field(name, value, sensitive);
            }
            first = false;
        }
        Ok(())
    }

    fn get(&self, index: usize) -> Result<(Name, Bytes), Malformed> {
        match index {
            0 => Err(Malformed("index 0")),
            1..=61 => {
                let (name, value) = STATIC[index - 1];
                Ok((static_name(name), Bytes::from_static(value.as_bytes())))
            }
            _ => {
                let e = self.table.get(index - 62).ok_or(Malformed("index past the table"))?;
                Ok((e.name.clone(), e.value.clone()))
            }
        }
    }

    /// A literal's name: by index, or as a string after it (index 0).
    fn name(&self, block: &[u8], at: &mut usize, index: usize) -> Result<Name, Malformed> {
        if index == 0 {
            let raw = string(block, at)?;
            let name = match raw.first() {
                Some(b':') => pseudo_name(&raw),
                // Uppercase is malformed in HTTP/2 (RFC 9113 §8.2.1); HeaderName would fold it.
                _ if raw.iter().any(u8::is_ascii_uppercase) => return Err(Malformed("an uppercase header name")),
                _ => Name::Header(HeaderName::from_bytes(&raw).map_err(|_| Malformed("an invalid header name"))?),
            };
            return Ok(name);
        }
        match index {
            1..=61 => Ok(static_name(STATIC[index - 1].0)),
            _ => Ok(self.table.get(index - 62).ok_or(Malformed("index past the table"))?.name.clone()),
        }
    }

    fn insert(&mut self, entry: Entry) {
        let size = entry.size();
        if size > self.limit {
            // Larger than the table: it empties it and is not added (RFC 7541 §4.4).
            self.table.clear();
            self.size = 0;
            return;
        }
        self.evict(size);
        self.size += size;
        self.table.push_front(entry);
    }

    /// Evicts the oldest entries until `room` more fits.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.limit {
            let Some(old) = self.table.pop_back() else { break };
            self.size -= old.size();
        }
    }
}

/// An integer with an `n`-bit prefix (RFC 7541 §5.1), at most 2^28 here.
fn integer(block: &[u8], at: &mut usize, n: u8) -> Result<usize, Malformed> {
    let mask = (1usize << n) - 1;
    let mut value = usize::from(block[*at]) & mask;
    *at += 1;
    if value < mask {
        return Ok(value);
    }
    let mut shift = 0;
    loop {
        let &b = block.get(*at).ok_or(Malformed("a truncated integer"))?;
        *at += 1;
        value += usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
        if shift > 21 {
            return Err(Malformed("an integer too large"));
        }
    }
}

/// A string literal (RFC 7541 §5.2), Huffman-coded or plain.
fn string(block: &[u8], at: &mut usize) -> Result<Bytes, Malformed> {
    let &first = block.get(*at).ok_or(Malformed("a truncated string"))?;
    let len = integer(block, at, 7)?;
    let raw = block.get(*at..*at + len).ok_or(Malformed("a string past the block"))?;
    *at += len;
    if first & 0x80 == 0 {
        return Ok(Bytes::copy_from_slice(raw));
    }
    let mut out = Vec::new();
    huffman::decode(raw, &mut out).ok_or(Malformed("a bad Huffman string"))?;
    Ok(out.into())
}

fn pseudo_name(name: &[u8]) -> Name {
    match name {
        b":authority" => Name::Authority,
        b":method" => Name::Method,
        b":path" => Name::Path,
        b":scheme" => Name::Scheme,
        b":status" => Name::Status,
        _ => Name::OtherPseudo(name.len()),
    }
}

fn static_name(name: &'static str) -> Name {
    match name.as_bytes()[0] {
        b':' => pseudo_name(name.as_bytes()),
        _ => Name::Header(HeaderName::from_static(name)),
    }
}

/// Appends a response's `:status`.
pub fn status(code: u16, out: &mut Vec<u8>) {
    let index = match code {
        200 => 8,
        204 => 9,
        206 => 10,
        304 => 11,
        400 => 12,
        404 => 13,
        500 => 14,
        _ => {
            // Literal, not indexed, name by index 8 (`:status`): a three-digit value.
            out.extend_from_slice(&[0x08, 3]);
            out.extend_from_slice(itoa3(code).as_slice());
            return;
        }
    };
    out.push(0x80 | index);
}

fn itoa3(code: u16) -> [u8; 3] {
    [b'0' + (code / 100 % 10) as u8, b'0' + (code / 10 % 10) as u8, b'0' + (code % 10) as u8]
}

/// Appends a pseudo-header named by its static table index (1 `:authority`, 2 `:method`,
/// 4 `:path`, 6 `:scheme`): the whole field's index when the table holds the value too (`GET`,
/// `POST`, `/`, `http`), else a literal not indexed that names it by index.
pub fn pseudo(name: usize, value: &[u8], out: &mut Vec<u8>) {
    let same_name = STATIC[name - 1..].iter().take_while(|(n, _)| *n == STATIC[name - 1].0);
    if let Some(offset) = same_name.into_iter().position(|(_, v)| v.as_bytes() == value) {
        out.push(0x80 | (name + offset) as u8);
        return;
    }
    put_integer(name, 4, 0, out);
    put_string(value, out);
}

/// Appends a header: a literal not indexed (never indexed when `value` is sensitive), its name
/// by the static table's index when it has one.
pub fn header(name: &HeaderName, value: &HeaderValue, out: &mut Vec<u8>) {
    let prefix = if value.is_sensitive() { 0x10 } else { 0x00 };
    match static_index(name.as_str()) {
        Some(index) => put_integer(index, 4, prefix, out),
        None => {
            out.push(prefix);
            put_string(name.as_str().as_bytes(), out);
        }
    }
    put_string(value.as_bytes(), out);
}

fn put_string(s: &[u8], out: &mut Vec<u8>) {
    put_integer(s.len(), 7, 0, out);
    out.extend_from_slice(s);
}

fn put_integer(mut value: usize, n: u8, prefix: u8, out: &mut Vec<u8>) {
    let mask = (1usize << n) - 1;
    if value < mask {
        out.push(prefix | value as u8);
        return;
    }
    out.push(prefix | mask as u8);
    value -= mask;
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The static table's index of a header name (the first entry with it).
fn static_index(name: &str) -> Option<usize> {
    Some(match name {
        "accept-charset" => 15,
        "accept-encoding" => 16,
        "accept-language" => 17,
        "accept-ranges" => 18,
        "accept" => 19,
        "access-control-allow-origin" => 20,
        "age" => 21,
        "allow" => 22,
        "authorization" => 23,
        "cache-control" => 24,
        "content-disposition" => 25,
        "content-encoding" => 26,
        "content-language" => 27,
        "content-length" => 28,
        "content-location" => 29,
        "content-range" => 30,
        "content-type" => 31,
        "cookie" => 32,
        "date" => 33,
        "etag" => 34,
        "expect" => 35,
        "expires" => 36,
        "from" => 37,
        "host" => 38,
        "if-match" => 39,
        "if-modified-since" => 40,
        "if-none-match" => 41,
        "if-range" => 42,
        "if-unmodified-since" => 43,
        "last-modified" => 44,
        "link" => 45,
        "location" => 46,
        "max-forwards" => 47,
        "proxy-authenticate" => 48,
        "proxy-authorization" => 49,
        "range" => 50,
        "referer" => 51,
        "refresh" => 52,
        "retry-after" => 53,
        "server" => 54,
        "set-cookie" => 55,
        "strict-transport-security" => 56,
        "transfer-encoding" => 57,
        "user-agent" => 58,
        "vary" => 59,
        "via" => 60,
        "www-authenticate" => 61,
        _ => return None,
    })
}

/// RFC 7541 Appendix A.
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

#[cfg(test)]
mod tests;
