//! W3C Trace Context: a request keeps its `traceparent`; one without (or with a malformed one)
//! gets a new trace, so every hop of a request can be correlated in logs and traces.

use http::HeaderMap;

pub const TRACEPARENT: &str = "traceparent";

/// Ensures a valid `traceparent` and returns its trace id.
pub fn ensure(headers: &mut HeaderMap) -> String {
    if let Some(id) = headers.get(TRACEPARENT).and_then(|v| v.to_str().ok()).and_then(trace_id) {
        return id.to_string();
    }
    let trace = format!("{:016x}{:016x}", fastrand::u64(1..), fastrand::u64(..));
    let value = format!("00-{trace}-{:016x}-01", fastrand::u64(1..));
    if let Ok(v) = http::HeaderValue::from_str(&value) {
        headers.insert(TRACEPARENT, v);
    }
    trace
}

/// The trace id of a well-formed version-00 `traceparent`.
fn trace_id(value: &str) -> Option<&str> {
    let parts: Vec<&str> = value.trim().split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let zero = |s: &str| s.bytes().all(|b| b == b'0');
    match parts.as_slice() {
        [v, t, p, f] if *v == "00" && hex(t, 32) && hex(p, 16) && hex(f, 2) && !zero(t) && !zero(p) => Some(t),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_valid_parent_and_replaces_a_broken_one() {
        let mut h = HeaderMap::new();
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        h.insert(TRACEPARENT, valid.parse().unwrap());
        assert_eq!(ensure(&mut h), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(h[TRACEPARENT], valid);
        h.insert(TRACEPARENT, "00-00000000000000000000000000000000-00f067aa0ba902b7-01".parse().unwrap());
        let id = ensure(&mut h);
        assert_eq!(id.len(), 32);
        assert_eq!(trace_id(h[TRACEPARENT].to_str().unwrap()), Some(id.as_str()));
        let mut empty = HeaderMap::new();
        let id = ensure(&mut empty);
        assert!(empty[TRACEPARENT].to_str().unwrap().starts_with(&format!("00-{id}-")));
    }
}
