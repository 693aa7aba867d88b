use super::request::MAX_TARGET;
use super::*;
use crate::transport::h1::raw::RawHeaders;
use bytes::BytesMut;
use http::{HeaderMap, Method, StatusCode};

fn head(text: &str, method: Method) -> Result<Option<Head>, WireError> {
    parse_head(&mut BytesMut::from(text), &method, &mut Vec::new())
}

/// What `value` relies on to skip the check: every value byte httparse lets through, in a
/// request or a response, is one `HeaderValue` accepts.
#[test]
fn values_httparse_accepts_are_header_values() {
    let mut accepted = 0;
    for b in 0..=255u8 {
        let text = [&b"x-a: a"[..], &[b], b"b\r\n\r\n"].concat();
        let mut slots = [httparse::EMPTY_HEADER; 4];
        let request = [&b"GET / HTTP/1.1\r\n"[..], &text].concat();
        let response = [&b"HTTP/1.1 200 OK\r\n"[..], &text].concat();
        let mut req = httparse::Request::new(&mut slots);
        if let Ok(httparse::Status::Complete(_)) = req.parse(&request) {
            assert!(HeaderValue::from_bytes(req.headers[0].value).is_ok(), "request byte {b:#x}");
            accepted += 1;
        }
        let mut slots = [httparse::EMPTY_HEADER; 4];
        let mut resp = httparse::Response::new(&mut slots);
        if let Ok(httparse::Status::Complete(_)) = resp.parse(&response) {
            assert!(HeaderValue::from_bytes(resp.headers[0].value).is_ok(), "response byte {b:#x}");
            accepted += 1;
        }
    }
    // Tab, 0x20-0x7e and 0x80-0xff, in both: the test is not vacuous.
    assert_eq!(accepted, 2 * (1 + 95 + 128));
}

#[test]
fn a_request_head_frames_its_body_by_length_and_keeps_host() {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("catalog"));
    headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
    headers.insert("x-a", HeaderValue::from_static("1"));
    for hop in ["connection", "keep-alive", "expect", "te", "upgrade", "proxy-authorization"] {
        headers.insert(hop, HeaderValue::from_static("x"));
    }
    let mut out = Vec::new();
    encode_head(&Method::POST, "/p?q=1", &headers, "10.0.0.1:80", 12, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "POST /p?q=1 HTTP/1.1\r\nhost: catalog\r\nx-a: 1\r\ncontent-length: 12\r\n\r\n"
    );
    let mut out = Vec::new();
    encode_head(&Method::GET, "/", &HeaderMap::new(), "10.0.0.1:80", 0, &mut out);
    assert_eq!(String::from_utf8(out).unwrap(), "GET / HTTP/1.1\r\nhost: 10.0.0.1:80\r\n\r\n");
}

#[test]
fn response_heads_say_how_their_body_ends_and_whether_the_connection_stays() {
    let h = head("HTTP/1.1 200 OK\r\ncontent-length: 3\r\nx: y\r\n\r\nabc", Method::GET).unwrap().unwrap();
    assert_eq!((h.status.as_u16(), h.framing, h.keep_alive), (200, Framing::Length(3), true));
    assert_eq!(h.headers.lines(), b"content-length: 3\r\nx: y\r\n");
    assert_eq!((h.headers.content_length, h.headers.has_date), (Some(3), false));

    let text = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\ntransfer-encoding: gzip, chunked\r\nDate: d\r\n\r\n";
    let h = head(text, Method::GET).unwrap().unwrap();
    assert_eq!(h.framing, Framing::Chunked);
    assert_eq!(h.headers.lines(), b"Date: d\r\n", "no framing header travels with a chunked body");
    assert_eq!((h.headers.content_length, h.headers.has_date), (None, true));

    let h = head("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n", Method::GET).unwrap().unwrap();
    assert!(!h.keep_alive);
    assert_eq!(h.headers.lines(), b"content-length: 0\r\n");
    let h = head("HTTP/1.0 200 OK\r\n\r\nbody", Method::GET).unwrap().unwrap();
    assert_eq!((h.framing, h.keep_alive), (Framing::Eof, false));
    let h =
        head("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 4\r\n\r\n", Method::GET).unwrap().unwrap();
    assert!(h.keep_alive);
    let h = head("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", Method::HEAD).unwrap().unwrap();
    assert_eq!(h.framing, Framing::Length(0));
    let h = head("HTTP/1.1 304 Not Modified\r\n\r\n", Method::GET).unwrap().unwrap();
    assert_eq!((h.framing, h.keep_alive), (Framing::Length(0), true));
}

#[test]
fn the_lines_that_travel_are_the_upstreams_own_whatever_their_case_or_line_ends() {
    let lines = |text: &str| head(text, Method::GET).unwrap().unwrap().headers.lines().to_vec();
    let text = "HTTP/1.1 200 OK\r\nServer: s\r\nX-A:  1 \r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok";
    assert_eq!(lines(text), b"Server: s\r\nX-A:  1 \r\nContent-Length: 2\r\n", "one length, written once");
    let text = "HTTP/1.1 200 OK\r\nA: 1\r\nKeep-Alive: 5\r\nUpgrade: x\r\nB: 2\nTE: t\r\nC: 3\n\n";
    assert_eq!(lines(text), b"A: 1\r\nB: 2\r\nC: 3\r\n", "connection headers out, bare LFs made CRLF");
    assert_eq!(lines("HTTP/1.1 204 No Content\r\n\r\n"), b"");
    assert_eq!(lines("HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n"), b"");
}

#[test]
fn interim_responses_are_skipped_and_partial_or_bad_heads_are_told_apart() {
    let mut buf = BytesMut::from("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n");
    let mut interim = Vec::new();
    assert_eq!(parse_head(&mut buf, &Method::POST, &mut interim).unwrap().unwrap().status.as_u16(), 201);
    assert_eq!(interim, b"HTTP/1.1 100 Continue\r\n\r\n", "forwarded ahead of the response");
    assert!(buf.is_empty());
    assert!(head("HTTP/1.1 200 OK\r\ncontent-le", Method::GET).unwrap().is_none());
    assert!(head("HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n", Method::GET).is_err());
    assert_eq!(
        head("HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n", Method::GET).unwrap_err(),
        WireError::ContentLength
    );
    assert!(head("NOT HTTP\r\n\r\n", Method::GET).is_err());
    let huge = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD + 1));
    assert_eq!(head(&huge, Method::GET).unwrap_err(), WireError::HeadTooLarge);
}

#[test]
fn a_chunked_body_decodes_across_any_split_with_its_trailers() {
    let wire = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\ngrpc-status: 0\r\n\r\nNEXT";
    for split in 0..wire.len() {
        let (mut buf, mut state, mut data, mut trailers) = (BytesMut::new(), Chunked::Size, Vec::new(), None);
        let mut end = false;
        for part in [&wire[..split], &wire[split..]] {
            buf.extend_from_slice(part);
            while state != Chunked::Done {
                let Some(piece) = decode_chunked(&mut buf, &mut state).unwrap() else { break };
                match piece {
                    Piece::Data(d) => data.extend_from_slice(&d),
                    Piece::Trailers(t) => trailers = Some(t),
                    Piece::End => end = true,
                }
            }
        }
        assert_eq!(data, b"hello world", "split at {split}");
        assert_eq!(trailers.as_ref().map(|t| t["grpc-status"].clone()), Some(HeaderValue::from_static("0")));
        assert!(state == Chunked::Done && !end, "the trailers frame is the last");
        assert_eq!(&buf[..], b"NEXT", "what follows the body stays for the next response");
    }
    let (mut buf, mut state) = (BytesMut::from("0\r\n\r\n"), Chunked::Size);
    assert_eq!(decode_chunked(&mut buf, &mut state).unwrap(), Some(Piece::End));
    let (mut buf, mut state) = (BytesMut::from("zz\r\n"), Chunked::Size);
    assert_eq!(decode_chunked(&mut buf, &mut state), Err(WireError::Chunk));
    let (mut buf, mut state) = (BytesMut::from("1\r\nab\r\n"), Chunked::Size);
    assert!(matches!(decode_chunked(&mut buf, &mut state), Ok(Some(Piece::Data(_)))));
    assert_eq!(decode_chunked(&mut buf, &mut state), Err(WireError::Chunk));
}

fn request(text: &str) -> (Request, BytesMut) {
    let mut buf = BytesMut::from(text);
    (parse_request(&mut buf, 16), buf)
}

#[test]
fn simple_requests_are_taken_and_anything_else_is_left_whole_for_hyper() {
    let (r, rest) = request("POST /p?q=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTE: trailers\r\n\r\nbodyGET");
    let Request::Simple { head, body, close, trailers } = r else { panic!("simple") };
    assert_eq!(
        (head.method.as_str(), head.uri.to_string().as_str(), body, close, trailers),
        ("POST", "/p?q=1", 4, false, true)
    );
    assert_eq!(head.headers["host"], "a");
    assert_eq!(&rest[..], b"bodyGET", "the body and what follows stay");
    let (r, _) = request("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n");
    assert!(matches!(r, Request::Simple { close: true, body: 0, .. }));
    assert!(matches!(request("GET / HTTP/1.1\r\nHost: a\r\n").0, Request::Partial));
    for other in [
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 17\r\n\r\n",
    ] {
        let (r, rest) = request(other);
        assert!(matches!(r, Request::Other), "{other}");
        assert_eq!(&rest[..], other.as_bytes(), "untouched: {other}");
    }
    // The preface in pieces waits for more: hyper is never handed a connection whose first
    // request it would have to wait for.
    for partial in ["P", "PRI ", "PRI * HTTP/2.0\r\n"] {
        assert!(matches!(request(partial).0, Request::Partial), "{partial}");
    }
}

#[test]
fn an_absolute_target_names_the_host_and_nominated_headers_stay_behind() {
    let text =
        "GET http://svc:81/p?q HTTP/1.1\r\nHost: other\r\nConnection: x-hop, close\r\nX-Hop: 1\r\nX-End: 2\r\n\r\n";
    let Request::Simple { head, close, .. } = request(text).0 else { panic!("simple") };
    assert_eq!(head.headers["host"], "svc:81", "RFC 9112 §3.2.2: the target's authority, not Host");
    assert_eq!(head.headers.get_all("host").iter().count(), 1);
    assert_eq!(head.uri.path_and_query().unwrap().as_str(), "/p?q");
    assert!(close && head.headers.get("x-hop").is_none() && head.headers["x-end"] == "2");
    // Routing and framing are not a client's to take away.
    let text = "POST / HTTP/1.1\r\nHost: a\r\nConnection: host, content-length\r\nContent-Length: 2\r\n\r\nok";
    let Request::Simple { head, body: 2, .. } = request(text).0 else { panic!("simple") };
    assert!(head.headers.contains_key("host") && head.headers.contains_key("content-length"));
}

#[test]
fn a_head_that_cannot_be_served_is_refused_never_handed_on() {
    let refused = |text: &str| match request(text).0 {
        Request::Refused(r) => r.status.as_u16(),
        other => panic!("{text:?}: {other:?}"),
    };
    for target in ["/c51<x>", "/`", "/>", "http:/c", "http://", "http://[::1/c", "http://svc:80:80/c"] {
        let text =
            format!("GET {target} HTTP/1.1\r\nHost: svc\r\nContent-Length: 41\r\n\r\nGET /smuggled HTTP/1.1\r\n");
        assert_eq!(refused(&text), 400, "{target}");
    }
    for (text, status) in [
        ("G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\u{a0}\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        ("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
        ("GET http://u@svc/ HTTP/1.1\r\nHost: svc\r\n\r\n", 400),
        ("GET svc:80 HTTP/1.1\r\nHost: svc\r\n\r\n", 400),
        ("GET * HTTP/1.1\r\nHost: svc\r\n\r\n", 400),
        ("GET ftp://svc/ HTTP/1.1\r\nHost: svc\r\n\r\n", 400),
        // CL.TE and TE.CL: both framings at once.
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n", 400),
        // TE.TE: a coding that is not chunked, last.
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400),
        ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        ("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405),
    ] {
        assert_eq!(refused(text), status, "{text:?}");
    }
    assert_eq!(refused(&format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(MAX_TARGET))), 414);
    assert_eq!(refused(&format!("GET /{}", "a".repeat(MAX_HEAD))), 414, "a request line that never ends");
    let big = format!("GET / HTTP/1.1\r\nHost: a\r\nx: {}\r\n\r\n", "a".repeat(MAX_HEAD));
    assert_eq!(refused(&big), 431);
    assert_eq!(refused(&format!("GET / HTTP/1.1\r\nHost: a\r\nx: {}", "a".repeat(MAX_HEAD))), 431);
    let many = format!("GET / HTTP/1.1\r\n{}\r\n", "x: y\r\n".repeat(MAX_HEADERS + 1));
    assert_eq!(refused(&many), 431);
}

#[test]
fn response_heads_frame_their_body_and_drop_connection_headers() {
    let mut headers = HeaderMap::new();
    headers.insert("x-a", HeaderValue::from_static("1"));
    headers.insert("connection", HeaderValue::from_static("keep-alive"));
    headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
    let ok = StatusCode::OK;
    let parts = |status, headers: &HeaderMap| {
        let mut parts = http::Response::new(()).into_parts().0;
        (parts.status, parts.headers) = (status, headers.clone());
        parts
    };
    let encode = |status, headers: &HeaderMap, head_request, length| {
        let mut out = Vec::new();
        let framing = encode_response_head(&parts(status, headers), head_request, length, false, b"now", &mut out);
        (framing, String::from_utf8(out).unwrap())
    };
    assert_eq!(encode(ok, &headers, false, Some(3)).0, Out::Length(3));
    assert_eq!(encode(ok, &headers, false, None).0, Out::Chunked);
    assert_eq!(encode(ok, &headers, true, Some(3)).0, Out::Nothing);
    assert_eq!(encode(StatusCode::NOT_MODIFIED, &headers, false, None).0, Out::Nothing);
    let mut out = Vec::new();
    encode_response_head(&parts(ok, &headers), false, Some(3), true, b"Thu, 26 Nov 2026 23:00:00 GMT", &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 200 OK\r\nx-a: 1\r\ndate: Thu, 26 Nov 2026 23:00:00 GMT\r\ncontent-length: 3\r\nconnection: close\r\n\r\n"
    );
    let (framing, text) = encode(StatusCode::NOT_FOUND, &headers, false, None);
    assert_eq!(framing, Out::Chunked);
    assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n") && text.contains("transfer-encoding: chunked"), "{text}");
    headers.insert("content-length", HeaderValue::from_static("9"));
    headers.insert("date", HeaderValue::from_static("then"));
    let (framing, text) = encode(ok, &headers, false, None);
    assert_eq!(framing, Out::Length(9), "a declared length wins");
    assert_eq!(text.matches("content-length").count(), 1, "{text}");
    assert_eq!(text.matches("date").count(), 1, "{text}");
    assert!(text.contains("date: then\r\n") && !text.contains("chunked"), "{text}");
    let (framing, text) = encode(ok, &headers, true, Some(0));
    assert_eq!(framing, Out::Nothing);
    assert!(text.contains("content-length: 9\r\n"), "a HEAD response says the length a GET's would have: {text}");
    headers.insert("content-length", HeaderValue::from_static("nine"));
    let (framing, text) = encode(ok, &headers, false, Some(4));
    assert_eq!(framing, Out::Length(4), "a broken length is not believed");
    assert!(text.contains("content-length: 4\r\n") && !text.contains("nine"), "{text}");

    // An upstream's lines go out as they came, ahead of what the proxy added; their length
    // and date are theirs.
    let mut with_raw = parts(ok, &HeaderMap::new());
    with_raw.headers.insert("x-added", HeaderValue::from_static("1"));
    with_raw.headers.insert("content-length", HeaderValue::from_static("7"));
    let raw = Bytes::from_static(b"Date: then\r\nContent-Length: 2\r\nX-Up: u\r\n");
    with_raw.extensions.insert(RawHeaders::new(raw, Some(2), true));
    let mut out = Vec::new();
    assert_eq!(encode_response_head(&with_raw, false, None, false, b"now", &mut out), Out::Length(2));
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 200 OK\r\nDate: then\r\nContent-Length: 2\r\nX-Up: u\r\nx-added: 1\r\n\r\n"
    );
    let mut out = Vec::new();
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    last_chunk(Some(&trailers), &mut out);
    assert_eq!(out, b"0\r\ngrpc-status: 0\r\n\r\n");
}

/// Bytes a peer might send: HTTP fragments, so that generated input gets deep into the
/// parsers, mixed with anything at all.
fn wire_bytes() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    const FRAGMENTS: &[&str] = &[
        "GET ",
        "POST ",
        "HEAD ",
        "PRI ",
        "/",
        "/p?q",
        " HTTP/1.1",
        " HTTP/1.0",
        "HTTP/1.1 ",
        "200 OK",
        "100 Continue",
        "204",
        "\r\n",
        "\r\n\r\n",
        "Host: a",
        "Content-Length: ",
        "Transfer-Encoding: chunked",
        "Connection: close",
        "TE: trailers",
        "Expect: 100-continue",
        "0",
        "5",
        "ff",
        "18446744073709551616",
        ";x=1",
        ":",
        " ",
        "hello",
    ];
    let piece = prop_oneof![
        proptest::sample::select(FRAGMENTS).prop_map(|f| f.as_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

proptest::proptest! {
    #[test]
    fn the_parsers_never_panic_and_leave_what_they_do_not_take(input in wire_bytes()) {
        let mut buf = BytesMut::from(&input[..]);
        match parse_request(&mut buf, 16) {
            Request::Simple { .. } => proptest::prop_assert!(buf.len() < input.len()),
            // Whatever it took, the connection closes after the answer.
            Request::Refused(r) => proptest::prop_assert!(r.status.is_client_error()),
            Request::Partial | Request::Other => proptest::prop_assert_eq!(&buf[..], &input[..]),
        }
        for method in [Method::GET, Method::HEAD] {
            let mut buf = BytesMut::from(&input[..]);
            // Not all there yet: at most interim (1xx) heads were taken, off the front.
            if let Ok(None) = parse_head(&mut buf, &method, &mut Vec::new()) {
                proptest::prop_assert!(input.ends_with(&buf));
            }
        }
        let (mut buf, mut state) = (BytesMut::from(&input[..]), Chunked::Size);
        // Every step takes bytes, ends, fails or asks for more: it never spins.
        for _ in 0..=input.len() + 2 {
            let before = (buf.len(), state);
            match decode_chunked(&mut buf, &mut state) {
                Ok(Some(Piece::End)) | Ok(None) | Err(_) => break,
                Ok(Some(_)) => proptest::prop_assert!((buf.len(), state) != before),
            }
        }
    }
}

#[test]
fn hostile_response_heads_are_refused_or_made_safe() {
    for text in [
        "HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nok",
        "HTTP/1.1 200 OK\r\ncontent-length: 2 2\r\n\r\nok",
        "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
    ] {
        assert_eq!(head(text, Method::GET).unwrap_err(), WireError::ContentLength, "{text:?}");
    }
    assert_eq!(
        head("HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n", Method::GET).unwrap_err(),
        WireError::Upgrade
    );
    // Both framings: chunked wins, the length does not travel, the connection is not reused.
    let h = head("HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n", Method::GET)
        .unwrap()
        .unwrap();
    assert_eq!((h.framing, h.keep_alive, h.headers.lines()), (Framing::Chunked, false, &b""[..]));
    let h = head("HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", Method::GET).unwrap().unwrap();
    assert_eq!((h.framing, h.keep_alive), (Framing::Eof, false), "RFC 9112 §6.1: HTTP/1.0 framing is faulty");
    // What `Connection` names is the upstream's connection's, never the length.
    let text =
        "HTTP/1.1 200 OK\r\nConnection: X-Hop, Content-Length\r\nX-Hop: 1\r\nX-End: 2\r\nContent-Length: 0\r\n\r\n";
    let h = head(text, Method::GET).unwrap().unwrap();
    assert_eq!(h.headers.lines(), b"X-End: 2\r\nContent-Length: 0\r\n");
}

#[test]
fn interim_responses_are_forwarded_ahead_of_the_final_one() {
    let text = "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\nConnection: keep-alive\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
    let mut interim = Vec::new();
    let h = parse_head(&mut BytesMut::from(text), &Method::GET, &mut interim).unwrap().unwrap();
    assert_eq!(interim, b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n");
    let mut parts = http::Response::new(()).into_parts().0;
    parts.extensions.insert(h.headers.with_interim(interim.into()));
    let mut out = Vec::new();
    encode_response_head(&parts, false, None, false, b"now", &mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\n"), "{text}");
}

#[test]
fn chunk_sizes_are_hex_digits_only() {
    for bad in ["+2", "-2", " 2", "0x2", "2 x", "", "11111111111111111", "2\u{a0}"] {
        let (mut buf, mut state) = (BytesMut::from(format!("{bad}\r\nok\r\n0\r\n\r\n").as_str()), Chunked::Size);
        assert_eq!(decode_chunked(&mut buf, &mut state), Err(WireError::Chunk), "{bad:?}");
    }
    for good in ["2", "02", "2 ", "2\t;ext=1", "2;a=b;c"] {
        let (mut buf, mut state) = (BytesMut::from(format!("{good}\r\nok\r\n0\r\n\r\n").as_str()), Chunked::Size);
        assert_eq!(decode_chunked(&mut buf, &mut state), Ok(Some(Piece::Data(Bytes::from_static(b"ok")))), "{good:?}");
    }
}

/// What a server made of a request head and the bytes after it.
#[derive(Debug, PartialEq)]
enum Decision {
    /// Taken, with a body of this many bytes (`None`: the body could not be read).
    Accepted(Option<usize>),
    Refused(u16),
    /// Still waiting for the rest of the head.
    Incomplete,
}

/// hyper's HTTP/1.1 server, set up as the proxy sets it up, given `input` and then the end of
/// the stream.
fn hyper_decides(rt: &tokio::runtime::Runtime, input: &[u8]) -> Decision {
    use http_body_util::BodyExt;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let taken: Arc<Mutex<Option<Option<usize>>>> = Arc::default();
        let record = taken.clone();
        let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let record = record.clone();
            async move {
                let body = req.into_body().collect().await.ok().map(|b| b.to_bytes().len());
                *record.lock().unwrap() = Some(body);
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<Bytes>::new()))
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.max_header_size(MAX_HEAD).max_headers(MAX_HEADERS);
        let conn = tokio::spawn(builder.serve_connection(hyper_util::rt::TokioIo::new(server), svc).with_upgrades());
        client.write_all(input).await.unwrap();
        client.shutdown().await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), client.read_to_end(&mut answer)).await;
        conn.abort();
        if let Some(body) = *taken.lock().unwrap() {
            return Decision::Accepted(body);
        }
        match std::str::from_utf8(answer.get(9..12).unwrap_or_default()).ok().and_then(|s| s.parse().ok()) {
            Some(status) => Decision::Refused(status),
            None => Decision::Incomplete,
        }
    })
}

/// Request heads as an attacker writes them: every part drawn from what parsers are known to
/// disagree on.
fn hostile_heads() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    use proptest::sample::select;
    // Mostly the usual, so that most heads get past the request line.
    let usual = |usual: &'static [&'static str], odd: &'static [&'static str]| prop_oneof![4 => select(usual), 1 => select(odd)];
    let method = usual(&["GET", "POST", "PUT", "HEAD"], &["OPTIONS", "CONNECT", "G@T", "get", "PATCH"]);
    let target = usual(
        &["/", "/p?q=1", "http://svc/x"],
        &["*", "https://svc:8443/", "svc:80", "/<x>", "http://u@svc/", "//x", "/%zz", "http://", "/a b"],
    );
    let version = usual(&["HTTP/1.1", "HTTP/1.0"], &["HTTP/1.2", "http/1.1", "HTTP/2.0", "HTTP/1"]);
    let host = prop_oneof![4 => Just(vec!["Host: svc"]), 1 => Just(vec![])];
    let header = usual(
        &[
            "X-A: 1",
            "Content-Length: 0",
            "Content-Length: 5",
            "Content-Length: 60",
            "Connection: close",
            "TE: trailers",
        ],
        &[
            "Host: svc",
            "Host: evil",
            "Host: a@b",
            "Host: svc:80",
            "Host:",
            "Content-Length: 05",
            "Content-Length: +5",
            "Content-Length: -5",
            "Content-Length: 5, 5",
            "Content-Length: 5 ",
            "Content-Length:\t5",
            "Content-Length: 5\u{a0}",
            "Content-Length: 99999999999999999999",
            "Transfer-Encoding: chunked",
            "Transfer-Encoding: Chunked",
            "Transfer-Encoding: xchunked",
            "Transfer-Encoding: gzip, chunked",
            "Transfer-Encoding: chunked, x",
            "Transfer-Encoding: chunked, chunked",
            "Transfer-Encoding : chunked",
            " Transfer-Encoding: chunked",
            "Connection: keep-alive, x-a",
            "Upgrade: websocket",
            "Expect: 100-continue",
            "X-A: a\u{0}b",
            "Bad Name: 1",
        ],
    );
    let eol = usual(&["\r\n"], &["\n"]);
    let headers = proptest::collection::vec(header, 0..4);
    (method, target, version, host, headers, eol).prop_map(|(m, t, v, host, headers, eol)| {
        let mut head = format!("{m} {t} {v}{eol}");
        for h in host.into_iter().chain(headers) {
            head.push_str(h);
            head.push_str(eol);
        }
        head.push_str(eol);
        head.into_bytes()
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

    /// The proxy's parser and hyper's agree on every head the proxy serves itself: what it
    /// takes, hyper takes with the same body; what it refuses, hyper refuses, unless the
    /// proxy refuses on purpose what hyper lets through (see `Refused`'s constants). What it
    /// leaves to hyper is hyper's to decide.
    #[test]
    fn the_parser_decides_as_hyper_does(head in hostile_heads()) {
        const BODY_ROOM: usize = 64;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // Room for any length up to 64, or a chunked body, after the head.
        let tail = format!("{:x<width$}", "5\r\nhello\r\n0\r\n\r\n", width = BODY_ROOM);
        let input = [&head[..], tail.as_bytes()].concat();
        let ours = match parse_request(&mut BytesMut::from(&input[..]), BODY_ROOM) {
            Request::Simple { body, .. } => Decision::Accepted(Some(body)),
            Request::Refused(r) => Decision::Refused(r.status.as_u16()),
            Request::Partial => Decision::Incomplete,
            Request::Other => return Ok(()),
        };
        let hyper = hyper_decides(&rt, &input);
        let on_purpose = [Refused::BAD_HOST, Refused::BAD_FRAMING, Refused::CODING, Refused::CONNECT, Refused::BAD_TARGET];
        let text = String::from_utf8_lossy(&head);
        match (&ours, &hyper) {
            (Decision::Accepted(a), Decision::Accepted(b)) => proptest::prop_assert_eq!(a, b, "framing of {:?}", text),
            (Decision::Refused(_), Decision::Refused(_)) | (Decision::Incomplete, Decision::Incomplete) => {}
            (Decision::Refused(_), Decision::Accepted(_)) => {
                let Request::Refused(why) = parse_request(&mut BytesMut::from(&input[..]), BODY_ROOM) else { unreachable!() };
                proptest::prop_assert!(on_purpose.contains(&why), "refused {:?} ({}), hyper took it", text, why.why);
            }
            _ => proptest::prop_assert!(false, "{:?}: proxy {:?}, hyper {:?}", text, ours, hyper),
        }
    }
}
