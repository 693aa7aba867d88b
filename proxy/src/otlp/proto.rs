//! OTLP's protobuf messages, written by hand: the few fields a span export needs
//! (`opentelemetry/proto/collector/trace/v1/trace_service.proto` and the messages it holds)
//! cost less to write than a code generator and its runtime cost to build.

/// A protobuf message being written. A nested message is written in place and its length put
/// in front of it after, so nothing is written twice but the few bytes a long length moves.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

impl Writer {
    fn varint(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.buf.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.buf.push(n as u8);
    }

    fn tag(&mut self, field: u32, wire: u32) {
        self.varint(u64::from(field << 3 | wire));
    }

    pub fn bytes(&mut self, field: u32, value: &[u8]) {
        self.tag(field, LEN);
        self.varint(value.len() as u64);
        self.buf.extend_from_slice(value);
    }

    pub fn string(&mut self, field: u32, value: &str) {
        self.bytes(field, value.as_bytes());
    }

    pub fn uint(&mut self, field: u32, value: u64) {
        self.tag(field, VARINT);
        self.varint(value);
    }

    pub fn fixed64(&mut self, field: u32, value: u64) {
        self.tag(field, FIXED64);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    pub fn fixed32(&mut self, field: u32, value: u32) {
        self.tag(field, FIXED32);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    /// A nested message, written by `body`.
    pub fn message(&mut self, field: u32, body: impl FnOnce(&mut Writer)) {
        self.tag(field, LEN);
        let start = self.buf.len();
        body(self);
        let mut len = self.buf.len() - start;
        if len < 0x80 {
            // Nearly every attribute: one byte, and a short move.
            self.buf.insert(start, len as u8);
            return;
        }
        let (mut prefix, mut n) = ([0u8; 10], 0);
        while len >= 0x80 {
            prefix[n] = (len as u8) | 0x80;
            len >>= 7;
            n += 1;
        }
        prefix[n] = len as u8;
        self.buf.splice(start..start, prefix[..=n].iter().copied());
    }

    /// A `KeyValue` (common.proto) holding a string.
    pub fn attribute(&mut self, field: u32, key: &str, value: &str) {
        self.message(field, |kv| {
            kv.string(1, key);
            kv.message(2, |any| any.string(1, value));
        });
    }

    /// A `KeyValue` holding an integer (`AnyValue.int_value`).
    pub fn int_attribute(&mut self, field: u32, key: &str, value: i64) {
        self.message(field, |kv| {
            kv.string(1, key);
            kv.message(2, |any| any.uint(3, value as u64));
        });
    }
}

/// `Span.kind`.
pub const KIND_SERVER: u64 = 2;
pub const KIND_CLIENT: u64 = 3;
/// `Status.code`.
pub const STATUS_ERROR: u64 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_written_as_protobuf_encodes_them() {
        let mut w = Writer::default();
        w.uint(1, 300);
        assert_eq!(w.buf, [0x08, 0xac, 0x02]);
        let mut w = Writer::default();
        w.string(2, "hi");
        w.fixed32(16, 1);
        assert_eq!(w.buf, [0x12, 2, b'h', b'i', 0x85, 0x01, 1, 0, 0, 0]);
        let mut w = Writer::default();
        w.int_attribute(9, "n", -1);
        // KeyValue{key: "n", value: AnyValue{int_value: -1}}: -1 as a ten-byte varint.
        assert_eq!(&w.buf[..5], [0x4a, 16, 0x0a, 1, b'n']);
        assert_eq!(w.buf.len(), 2 + 16);
    }

    #[test]
    fn a_long_nested_message_gets_its_length_in_front() {
        let mut w = Writer::default();
        let text = "x".repeat(300);
        w.message(1, |m| m.string(1, &text));
        // Outer: tag, length 303 (two bytes); inner: tag, length 300 (two bytes), the text.
        assert_eq!(&w.buf[..5], [0x0a, 0xaf, 0x02, 0x0a, 0xac]);
        assert_eq!(w.buf.len(), 3 + 3 + 300);
    }
}
