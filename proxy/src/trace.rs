//! W3C Trace Context: a request keeps its `traceparent`; one without (or with a malformed one)
//! gets a new trace, so every hop of a request can be correlated in logs and traces.

use http::HeaderMap;

/// A header name made once: looking one up by `&str` parses the string every time.
pub const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");

/// A trace id: 32 lowercase hex digits, kept on the stack (this runs for every request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceId([u8; 32]);

impl TraceId {
    pub fn as_str(&self) -> &str {
        // Only ever filled with ASCII hex digits.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Display for TraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Ensures a valid `traceparent` and returns its trace id.
pub fn ensure(headers: &mut HeaderMap) -> TraceId {
    if let Some(kept) = headers.get_mut(&TRACEPARENT)
        && let Some(id) = trace_id(kept.as_bytes())
    {
        kept.set_sensitive(true);
        return id;
    }
    let id = TraceId::random();
    set(headers, id, fastrand::u64(1..), true);
    id
}

fn hex(n: u64, out: &mut [u8]) {
    // Sixteen digits always fit the sixteen bytes each caller gives.
    let _ = hex::encode_to_slice(n.to_be_bytes(), out);
}

/// A caller's `traceparent`: its trace, its span (this request's parent) and whether it
/// sampled the trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parent {
    pub trace: TraceId,
    pub span: u64,
    pub sampled: bool,
}

/// A well-formed version-00 `traceparent`.
pub fn parent(value: &[u8]) -> Option<Parent> {
    let trace = trace_id(value)?;
    let value = value.trim_ascii();
    let number = |s: &[u8]| std::str::from_utf8(s).ok().and_then(|s| u64::from_str_radix(s, 16).ok());
    Some(Parent { trace, span: number(&value[36..52])?, sampled: number(&value[53..55])? & 1 == 1 })
}

/// The trace id of a well-formed version-00 `traceparent`.
fn trace_id(value: &[u8]) -> Option<TraceId> {
    let value = value.trim_ascii();
    let hex = |s: &[u8]| s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let zero = |s: &[u8]| s.iter().all(|b| *b == b'0');
    // 00-<32 hex>-<16 hex>-<2 hex>
    if value.len() != 55 || &value[..3] != b"00-" || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let (trace, parent, flags) = (&value[3..35], &value[36..52], &value[53..55]);
    if !hex(trace) || !hex(parent) || !hex(flags) || zero(trace) || zero(parent) {
        return None;
    }
    let mut id = [0u8; 32];
    id.copy_from_slice(trace);
    Some(TraceId(id))
}

impl TraceId {
    /// A new random trace.
    pub fn random() -> TraceId {
        let mut id = [0u8; 32];
        hex(fastrand::u64(1..), &mut id[..16]);
        hex(fastrand::u64(..), &mut id[16..]);
        TraceId(id)
    }

    /// Its sixteen bytes, as OTLP carries it.
    pub fn bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        // Only ever 32 hex digits.
        let _ = hex::decode_to_slice(self.0, &mut out);
        out
    }
}

/// Sets `traceparent` to `trace`, `span` (the next hop's parent) and the sampled flag.
///
/// Marked never to be indexed, as every `traceparent` this proxy passes on: over HTTP/2 each
/// value is new, and HPACK would otherwise add each one to the connection's table, pushing out
/// the headers that repeat (`content-type`, `te`, the authority) to be sent in full again.
pub fn set(headers: &mut HeaderMap, trace: TraceId, span: u64, sampled: bool) {
    let mut value = *b"00-00000000000000000000000000000000-0000000000000000-00";
    value[3..35].copy_from_slice(&trace.0);
    hex(span, &mut value[36..52]);
    if sampled {
        value[54] = b'1';
    }
    // SAFETY: hex digits and dashes, every one a valid header value byte.
    #[allow(unsafe_code)]
    let mut v = unsafe { http::HeaderValue::from_maybe_shared_unchecked(bytes::Bytes::copy_from_slice(&value)) };
    v.set_sensitive(true);
    headers.insert(TRACEPARENT, v);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_valid_parent_and_replaces_a_broken_one() {
        let mut h = HeaderMap::new();
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        h.insert(TRACEPARENT, valid.parse().unwrap());
        assert_eq!(ensure(&mut h).as_str(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(h[TRACEPARENT], valid);
        assert!(h[TRACEPARENT].is_sensitive(), "a kept parent goes on never indexed");
        h.insert(TRACEPARENT, "00-00000000000000000000000000000000-00f067aa0ba902b7-01".parse().unwrap());
        let id = ensure(&mut h);
        assert_eq!(id.as_str().len(), 32);
        assert_eq!(trace_id(h[TRACEPARENT].as_bytes()), Some(id));
        let mut empty = HeaderMap::new();
        let id = ensure(&mut empty);
        let value = empty[TRACEPARENT].to_str().unwrap().to_string();
        assert!(value.starts_with(&format!("00-{id}-")) && value.ends_with("-01"), "{value}");
        assert_eq!(trace_id(value.as_bytes()), Some(id), "a made traceparent is well-formed");
        let p = parent(valid.as_bytes()).unwrap();
        assert_eq!((p.span, p.sampled), (0x00f067aa0ba902b7, true));
        assert_eq!(p.trace.bytes()[..2], [0x4b, 0xf9]);
        set(&mut h, p.trace, 0xab, false);
        assert_eq!(h[TRACEPARENT], "00-4bf92f3577b34da6a3ce929d0e0e4736-00000000000000ab-00");
        assert!(h[TRACEPARENT].is_sensitive(), "a made parent is never indexed");
        assert_eq!(parent(h[TRACEPARENT].as_bytes()).map(|p| p.sampled), Some(false));
        for bad in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(trace_id(bad.as_bytes()), None, "{bad}");
        }
    }
}
