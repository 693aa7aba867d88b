use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn fields(d: &mut Decoder, block: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    d.decode(block, |name, value, _| out.push((name.as_str().to_string(), String::from_utf8(value.to_vec()).unwrap())))
        .unwrap();
    out
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[test]
fn decodes_the_rfcs_requests_plain_and_huffman_coded_with_the_table_between_them() {
    for (first, second, third) in [
        // RFC 7541 C.3: without Huffman coding.
        (
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ),
        // C.4: the same with Huffman coding.
        (
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ),
    ] {
        let mut d = Decoder::default();
        let www = (":authority", "www.example.com");
        assert_eq!(fields(&mut d, &hex(first)), pairs(&[(":method", "GET"), (":scheme", "http"), (":path", "/"), www]));
        assert_eq!(d.size, 57);
        assert_eq!(
            fields(&mut d, &hex(second)),
            pairs(&[(":method", "GET"), (":scheme", "http"), (":path", "/"), www, ("cache-control", "no-cache")])
        );
        assert_eq!(d.size, 110);
        assert_eq!(
            fields(&mut d, &hex(third)),
            pairs(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                www,
                ("custom-key", "custom-value")
            ])
        );
        assert_eq!(d.size, 164);
    }
}

#[test]
fn evicts_the_oldest_entries_and_follows_size_updates() {
    let mut d = Decoder::default();
    // A size update to 100, then a 53-byte entry, then another: only the newer fits.
    let mut block = vec![0x3f, 100 - 31];
    block.extend(hex("4188 aa69 d29a c4b9 ec9b"));
    assert_eq!(fields(&mut d, &block), pairs(&[(":authority", "nghttp2.org")]));
    fields(&mut d, &hex("4188 aa69 d29a c4b9 ec9b"));
    assert_eq!(d.table.len(), 1);
    // Over the announced 4,096: refused; after a field: refused.
    assert!(d.decode(&[0x3f, 0xe2, 0x1f], |_, _, _| {}).is_err());
    assert!(d.decode(&[0x82, 0x20], |_, _, _| {}).is_err());
}

#[test]
fn refuses_what_is_malformed() {
    for bad in [
        &[0x80][..],                           // index 0
        &[0xbe],                               // past an empty table
        &[0x40, 0x03, b'a', b'B', b'c', 0x00], // uppercase name
        &[0x00, 0x85, 0xff],                   // a string past the block
        &[0x0f],                               // a truncated integer
        &[0x0f, 0xff, 0xff, 0xff, 0xff, 0x0f], // an integer too large
    ] {
        assert!(Decoder::default().decode(bad, |_, _, _| {}).is_err(), "{bad:?}");
    }
}

#[test]
fn what_the_encoder_writes_the_decoder_reads_back() {
    let mut out = Vec::new();
    for code in [200, 204, 404, 503, 101] {
        status(code, &mut out);
    }
    let custom = HeaderName::from_static("grpc-status");
    let mut secret = HeaderValue::from_static("00-abc-01");
    secret.set_sensitive(true);
    let long = HeaderValue::from_str(&"x".repeat(300)).unwrap();
    header(&http::header::CONTENT_TYPE, &HeaderValue::from_static("application/grpc"), &mut out);
    header(&custom, &HeaderValue::from_static("0"), &mut out);
    header(&HeaderName::from_static("traceparent"), &secret, &mut out);
    header(&http::header::WWW_AUTHENTICATE, &long, &mut out);
    let mut d = Decoder::default();
    let mut seen = Vec::new();
    d.decode(&out, |name, value, sensitive| seen.push((name, value, sensitive))).unwrap();
    let statuses: Vec<_> = seen[..5].iter().map(|(_, v, _)| v.clone()).collect();
    assert_eq!(statuses, ["200", "204", "404", "503", "101"]);
    assert_eq!(seen[5], (Name::Header(http::header::CONTENT_TYPE), Bytes::from("application/grpc"), false));
    assert_eq!(seen[6], (Name::Header(custom), Bytes::from("0"), false));
    assert!(seen[7].2, "a sensitive value is sent never indexed");
    assert_eq!(seen[8].1.len(), 300);
    assert_eq!(d.table.len(), 0, "the encoder adds nothing to the peer's table");
}

#[test]
fn the_static_table_agrees_with_its_name_index() {
    for (i, (name, _)) in STATIC.iter().enumerate() {
        if !name.starts_with(':') {
            assert_eq!(STATIC[static_index(name).unwrap() - 1].0, *name);
            assert!(static_index(name).unwrap() <= i + 1);
        }
    }
}
