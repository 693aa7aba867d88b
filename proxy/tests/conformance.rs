//! HTTP/1.1 conformance as an attacker tries it: hostile requests sent through a real proxy to
//! an upstream on a raw socket that records every byte it is sent. Each case says what the
//! client must get back and what the upstream may and may not see.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use trellis_model::config::Protocol;

mod common;

/// How long the proxy waits for a request's head in these tests.
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a client waits for the proxy to close; a connection still open then is held.
const CLIENT_WAIT: Duration = Duration::from_secs(4);

/// An upstream that records every byte it is sent and answers each request it can frame with
/// `response`.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    async fn start(response: &'static str) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let addr = common::spawn_app(move |stream| answer(stream, response, log.clone())).await;
        Recorder { addr, seen }
    }

    fn seen(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }
}

async fn answer(mut s: TcpStream, response: &'static str, seen: Arc<Mutex<Vec<u8>>>) {
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 16 * 1024];
        let n = match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        seen.lock().unwrap().extend_from_slice(&chunk[..n]);
        buf.extend_from_slice(&chunk[..n]);
        while let Some(len) = framed(&buf) {
            buf.drain(..len);
            if s.write_all(response.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

/// The length of the first whole request in `buf`: its head and its body by Content-Length
/// or chunked coding.
fn framed(buf: &[u8]) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head) = req.parse(buf).ok()? else { return None };
    let value = |name: &str| {
        req.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| String::from_utf8_lossy(h.value))
    };
    if value("transfer-encoding").is_some() {
        let mut at = head;
        loop {
            let line_end = at + buf[at..].windows(2).position(|w| w == b"\r\n")?;
            let size = usize::from_str_radix(std::str::from_utf8(&buf[at..line_end]).ok()?.trim(), 16).ok()?;
            at = line_end + 2 + size + 2;
            if size == 0 {
                return (buf.len() >= at).then_some(at);
            }
        }
    }
    let body = value("content-length").and_then(|v| v.trim().parse::<usize>().ok()).unwrap_or(0);
    (buf.len() >= head + body).then_some(head + body)
}

/// What a client got: every byte until the proxy closed, and whether it did close.
struct Got {
    text: String,
    closed: bool,
}

impl Got {
    /// The status of each response, in order.
    fn statuses(&self) -> Vec<u16> {
        let mut statuses = Vec::new();
        let mut rest = self.text.as_str();
        while let Some(at) = rest.find("HTTP/1.1 ") {
            statuses.extend(rest[at + 9..].get(..3).and_then(|s| s.parse::<u16>().ok()));
            rest = &rest[at + 9..];
        }
        statuses
    }
}

async fn send(addr: SocketAddr, bytes: &[u8]) -> Got {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut all = Vec::new();
    let read = tokio::time::timeout(CLIENT_WAIT, async {
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    Got { text: String::from_utf8_lossy(&all).into_owned(), closed: read.is_ok() }
}

/// One hostile exchange and what must come of it.
struct Case {
    name: &'static str,
    request: String,
    /// The statuses the client gets, in order; then the proxy closes the connection (or, with
    /// `held`, keeps it open).
    statuses: &'static [u16],
    held: bool,
    /// What the upstream must have been sent, and what it must never have been.
    saw: &'static [&'static str],
    never: &'static [&'static str],
}

const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

fn smuggling_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // A target the proxy cannot parse, carrying a second request as its body: the head is
    // refused, and its body is never read as a request.
    for target in ["/c51<x>", "/`", "/>", "http:/c", "http://", "http://[::1/c", "http://svc:80:80/c"] {
        let hidden = "GET /smuggled HTTP/1.1\r\nHost: svc\r\n\r\n";
        cases.push(Case {
            name: "a refused head's body is not a request",
            request: format!("GET {target} HTTP/1.1\r\nHost: svc\r\nContent-Length: {}\r\n\r\n{hidden}", hidden.len()),
            statuses: &[400],
            held: false,
            saw: &[],
            never: &["smuggled"],
        });
        cases.push(Case {
            name: "a refused head without a body is answered",
            request: format!("GET {target} HTTP/1.1\r\nHost: svc\r\n\r\n"),
            statuses: &[400],
            held: false,
            saw: &[],
            never: &["GET"],
        });
    }
    cases.push(Case {
        name: "a target too long for a URI is refused with its body",
        request: format!(
            "GET /{} HTTP/1.1\r\nHost: svc\r\nContent-Length: 38\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: svc\r\n\r\n",
            "a".repeat(65_534)
        ),
        statuses: &[414],
        held: false,
        saw: &[],
        never: &["smuggled"],
    });
    cases.push(Case {
        name: "a 65 KB target that waits is refused at once",
        request: format!("GET /{}", "a".repeat(65 * 1024)),
        statuses: &[414],
        held: false,
        saw: &[],
        never: &["GET"],
    });
    cases.push(Case {
        name: "a connection that sends only `PRI ` is closed at the header timeout",
        request: "PRI ".into(),
        statuses: &[],
        held: false,
        saw: &[],
        never: &["PRI"],
    });
    cases
}

async fn check(cases: Vec<Case>) {
    let upstream = Recorder::start(OK).await;
    let proxy = common::proxy_with(upstream.addr, Protocol::Http, |s| s.header_read_timeout = HEADER_TIMEOUT).await;
    let mut failures = Vec::new();
    for case in cases {
        upstream.seen.lock().unwrap().clear();
        let got = send(proxy.outbound, case.request.as_bytes()).await;
        // What the proxy sent on arrives within a moment of the answer.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let seen = upstream.seen();
        let mut wrong = Vec::new();
        if got.statuses() != case.statuses {
            wrong.push(format!("statuses {:?}, not {:?}", got.statuses(), case.statuses));
        }
        if got.closed == case.held {
            wrong.push(if got.closed { "closed".into() } else { "held open".into() });
        }
        wrong.extend(case.saw.iter().filter(|s| !seen.contains(*s)).map(|s| format!("upstream never saw {s:?}")));
        wrong.extend(case.never.iter().filter(|s| seen.contains(*s)).map(|s| format!("upstream saw {s:?}")));
        if !wrong.is_empty() {
            let request: String = case.request.chars().take(200).collect();
            failures.push(format!(
                "{}: {}\n  sent {request:?}\n  got {:?}\n  upstream saw {seen:?}",
                case.name,
                wrong.join("; "),
                got.text
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn request_smuggling_is_refused() {
    check(smuggling_cases()).await;
}
