//! HTTP/1.1 conformance as an attacker tries it: hostile requests and hostile responses sent
//! through a real proxy between a raw-socket client and a raw-socket upstream that records
//! every byte it is sent. Each case says what the client must get back and what the upstream
//! may and may not see. The request cases run against hyper's own server too, as a reference:
//! a case says whether hyper answers the same, and if not, why the proxy differs on purpose.
//! The README's conformance table is this table in words.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use trellis_model::config::Protocol;

mod common;

/// How long the proxy (and the reference server) waits for a request's head in these tests.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a client waits for the proxy to close; a connection still open then is held.
const CLIENT_WAIT: Duration = Duration::from_secs(5);

const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// An upstream that records every byte it is sent, and answers each request it can frame
/// with the response the case in hand set.
#[derive(Clone)]
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
    answer: Arc<Mutex<&'static str>>,
    requests: Arc<AtomicUsize>,
}

impl Recorder {
    async fn start() -> Self {
        let (seen, answer, requests) = (Arc::default(), Arc::new(Mutex::new(OK)), Arc::default());
        let mut r = Recorder { addr: "0.0.0.0:0".parse().unwrap(), seen, answer, requests };
        let serving = r.clone();
        r.addr = common::spawn_app(move |stream| serving.clone().serve(stream)).await;
        r
    }

    fn reset(&self, answer: &'static str) {
        self.seen.lock().unwrap().clear();
        *self.answer.lock().unwrap() = answer;
        self.requests.store(0, Ordering::SeqCst);
    }

    fn seen(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    async fn serve(self, mut s: TcpStream) {
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 16 * 1024];
            let n = match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            self.seen.lock().unwrap().extend_from_slice(&chunk[..n]);
            buf.extend_from_slice(&chunk[..n]);
            while let Some(len) = framed(&buf) {
                buf.drain(..len);
                self.requests.fetch_add(1, Ordering::SeqCst);
                let answer = *self.answer.lock().unwrap();
                // An answer of nothing: the upstream closes instead.
                if answer.is_empty() || s.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The length of the first whole request in `buf`: its head and its body by Content-Length
/// or chunked coding, as a strict upstream frames it.
fn framed(buf: &[u8]) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head) = req.parse(buf).ok()? else { return None };
    let value = |name: &str| {
        req.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| String::from_utf8_lossy(h.value))
    };
    if value("transfer-encoding").is_some() {
        let mut at = head;
        loop {
            let line_end = at + buf[at..].windows(2).position(|w| w == b"\r\n")?;
            let line = std::str::from_utf8(&buf[at..line_end]).ok()?;
            let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
            at = line_end + 2 + size;
            if size == 0 {
                // Trailers, then the blank line.
                let end = buf[at - 2..].windows(4).position(|w| w == b"\r\n\r\n")?;
                return Some(at - 2 + end + 4);
            }
            at += 2;
        }
    }
    let body = value("content-length").and_then(|v| v.trim().parse::<usize>().ok()).unwrap_or(0);
    (buf.len() >= head + body).then_some(head + body)
}

/// What a client got: every byte until the server closed or went quiet, and whether it did
/// close.
struct Got {
    text: String,
    closed: bool,
}

impl Got {
    /// The status of each response, in order (bodies here never say `HTTP/1.1 `).
    fn statuses(&self) -> Vec<u16> {
        self.text
            .match_indices("HTTP/1.1 ")
            .filter_map(|(at, _)| self.text.get(at + 9..at + 12)?.parse().ok())
            .collect()
    }
}

/// A server that sends nothing for this long after its answers is keeping the connection:
/// long enough for a slow answer on a busy machine, well short of the header timeout that
/// would close it.
const QUIET: Duration = Duration::from_millis(1000);

/// Sends `bytes` (a byte every 100 ms when `drip`), then reads until the server closes, or,
/// when a connection `held` is expected, until it has been quiet for [`QUIET`]: the header
/// timeout would close it later.
async fn send(addr: SocketAddr, bytes: &[u8], drip: bool, held: bool) -> Got {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut all = Vec::new();
    let exchange = async {
        if drip {
            for b in bytes {
                if s.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        } else {
            // The server may refuse and close before it has read everything.
            let _ = s.write_all(bytes).await;
        }
        let mut chunk = [0u8; 4096];
        loop {
            let read = s.read(&mut chunk);
            let read = if held { tokio::time::timeout(QUIET, read).await.map_err(|_| ()) } else { Ok(read.await) };
            match read {
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(n)) => all.extend_from_slice(&chunk[..n]),
                Err(()) => return false,
            }
        }
    };
    let closed = tokio::time::timeout(CLIENT_WAIT, exchange).await.unwrap_or(false);
    Got { text: String::from_utf8_lossy(&all).into_owned(), closed }
}

/// What hyper's own server does with the same request.
#[derive(Clone, Copy)]
enum Reference {
    /// The same statuses.
    Same,
    /// Different statuses, for this reason.
    Differs(&'static str),
    /// Not a question for a server (an upstream's answer, routing by service).
    None,
}

/// One hostile exchange and what must come of it.
struct Case {
    name: &'static str,
    request: Vec<u8>,
    drip: bool,
    /// What the upstream answers each request it frames.
    answer: &'static str,
    /// The statuses the client gets, in order; then the proxy closes the connection (or, with
    /// `held`, keeps it open for more).
    statuses: &'static [u16],
    held: bool,
    /// How many requests the upstream framed, when it matters.
    requests: Option<usize>,
    /// What the upstream must have been sent, and what never.
    saw: &'static [&'static str],
    never: &'static [&'static str],
    /// What the client must never get.
    client_never: &'static [&'static str],
    reference: Reference,
}

fn case(name: &'static str, request: impl Into<Vec<u8>>) -> Case {
    Case {
        name,
        request: request.into(),
        drip: false,
        answer: OK,
        statuses: &[],
        held: false,
        requests: None,
        saw: &[],
        never: &[],
        client_never: &[],
        reference: Reference::Same,
    }
}

impl Case {
    /// The proxy answers with these and closes.
    fn closes(mut self, statuses: &'static [u16]) -> Self {
        self.statuses = statuses;
        self
    }
    /// The proxy answers with these and keeps the connection.
    fn keeps(mut self, statuses: &'static [u16]) -> Self {
        (self.statuses, self.held) = (statuses, true);
        self
    }
    fn answer(mut self, answer: &'static str) -> Self {
        (self.answer, self.reference) = (answer, Reference::None);
        self
    }
    fn drip(mut self) -> Self {
        self.drip = true;
        self
    }
    fn requests(mut self, n: usize) -> Self {
        self.requests = Some(n);
        self
    }
    fn saw(mut self, s: &'static [&'static str]) -> Self {
        self.saw = s;
        self
    }
    fn never(mut self, s: &'static [&'static str]) -> Self {
        self.never = s;
        self
    }
    fn client_never(mut self, s: &'static [&'static str]) -> Self {
        self.client_never = s;
        self
    }
    fn reference(mut self, r: Reference) -> Self {
        self.reference = r;
        self
    }
}

const LINE_TOO_LONG: &str = "hyper says 431 of any head over its limit; the proxy 414 when the request line is";

const HIDDEN: &str = "GET /smuggled HTTP/1.1\r\nHost: svc\r\n\r\n";

fn with_hidden(head: &str) -> String {
    format!("{head}Content-Length: {}\r\n\r\n{HIDDEN}", HIDDEN.len())
}

/// Request smuggling: each family's known shapes, and the refused-head hole.
fn smuggling() -> Vec<Case> {
    let mut cases = Vec::new();
    for target in ["/c51<x>", "/`", "/>", "http:/c", "http://", "http://[::1/c", "http://svc:80:80/c"] {
        let head = format!("GET {target} HTTP/1.1\r\nHost: svc\r\n");
        cases
            .push(case("refused head: its body is never a request", with_hidden(&head)).closes(&[400]).never(&["GET"]));
        cases.push(
            case("refused head without a body is answered", format!("{head}\r\n")).closes(&[400]).never(&["GET"]),
        );
    }
    let long = format!("GET /{} HTTP/1.1\r\nHost: svc\r\n", "a".repeat(65_534));
    cases.push(
        case("target over 65,534 bytes, with a hidden request", with_hidden(&long))
            .closes(&[414])
            .never(&["GET"])
            .reference(Reference::Differs(LINE_TOO_LONG)),
    );
    let cl_te = "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG";
    let te_cl = "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n";
    let both = "hyper takes Transfer-Encoding over Content-Length and closes after; the proxy refuses both, as nginx";
    cases.extend([
        case("CL.TE", cl_te).closes(&[400]).never(&["POST"]).reference(Reference::Differs(both)),
        case("TE.CL", te_cl).closes(&[400]).never(&["POST"]).reference(Reference::Differs(both)),
        case(
            "TE.TE: a second Transfer-Encoding hides chunked",
            "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n",
        )
        .closes(&[400])
        .never(&["POST"]),
        case("TE.TE: xchunked", "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: xchunked\r\n\r\n")
            .closes(&[400])
            .never(&["POST"]),
        case(
            "TE.TE: a space before the colon",
            "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        )
        .closes(&[400])
        .never(&["POST"]),
        case(
            "TE.TE: folded onto the next line",
            "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
        )
        .closes(&[400])
        .never(&["POST"]),
        case(
            "CL.0: a GET's body is its body, framed for the upstream",
            with_hidden("GET /a HTTP/1.1\r\nHost: svc\r\n"),
        )
        .keeps(&[200])
        .requests(1),
        case("two Host headers", "GET / HTTP/1.1\r\nHost: svc\r\nHost: evil\r\n\r\n")
            .closes(&[400])
            .never(&["GET"])
            .reference(Reference::Differs("hyper does not check Host")),
        case("Host with user info", "GET / HTTP/1.1\r\nHost: evil@svc\r\n\r\n")
            .closes(&[400])
            .never(&["GET"])
            .reference(Reference::Differs("hyper does not check Host")),
        case("no Host in HTTP/1.1", "GET / HTTP/1.1\r\n\r\n")
            .closes(&[400])
            .reference(Reference::Differs("hyper does not check Host")),
        case("absolute-form names the service, not Host", "GET http://svc/a HTTP/1.1\r\nHost: evil\r\n\r\n")
            .keeps(&[200])
            .saw(&["GET /a HTTP/1.1\r\n", "host: svc\r\n"])
            .never(&["evil"])
            .reference(Reference::None),
        case(
            "absolute-form to another service is not sent to this one",
            "GET http://evil/a HTTP/1.1\r\nHost: svc\r\n\r\n",
        )
        .keeps(&[404])
        .never(&["GET"])
        .reference(Reference::None),
        case(
            "headers Connection names stay behind",
            "GET / HTTP/1.1\r\nHost: svc\r\nConnection: x-secret\r\nX-Secret: 1\r\n\r\n",
        )
        .keeps(&[200])
        .never(&["x-secret", "X-Secret"])
        .reference(Reference::None),
        case(
            "Connection cannot drop the length",
            "POST / HTTP/1.1\r\nHost: svc\r\nConnection: content-length\r\nContent-Length: 2\r\n\r\nhi",
        )
        .keeps(&[200])
        .saw(&["content-length: 2\r\n\r\nhi"])
        .reference(Reference::None),
    ]);
    cases
}

/// RFC 9112 §2-§7 and §11: what a request may look like.
fn framing() -> Vec<Case> {
    let length = |value: &str| format!("POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: {value}\r\n\r\nhello");
    let chunked = |body: &str| format!("POST /c HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
    vec![
        case("Content-Length +5", length("+5")).closes(&[400]).never(&["POST"]),
        case("Content-Length 5 then a no-break space", length("5\u{a0}")).closes(&[400]).never(&["POST"]),
        case("Content-Length as a list", length("5, 5"))
            .closes(&[400])
            .never(&["POST"]),
        case("two different Content-Lengths", "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
            .closes(&[400])
            .never(&["POST"]),
        case("the same Content-Length twice is one", "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello")
            .keeps(&[200])
            .saw(&["content-length: 5\r\n\r\nhello"]),
        case("chunked with extensions and trailers", chunked("5;ext=1\r\nhello\r\n0\r\nx-t: 1\r\n\r\n"))
            .keeps(&[200])
            .saw(&["hello"])
            .requests(1),
        case("chunk size +5", chunked("+5\r\nhello\r\n0\r\n\r\n")).closes(&[400]).never(&["hello"]),
        case("chunk size that is not hex", chunked("zz\r\nhello\r\n0\r\n\r\n")).closes(&[400]).never(&["hello"]),
        case("a coding besides chunked", "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n")
            .closes(&[501])
            .never(&["POST"])
            .reference(Reference::Differs("hyper passes codings on; the proxy would have to undo them to frame the body, so it refuses, as nginx")),
        case("Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
            .closes(&[400])
            .never(&["POST"]),
        case("a NUL in a header value", "GET / HTTP/1.1\r\nHost: svc\r\nX: a\0b\r\n\r\n").closes(&[400]).never(&["GET"]),
        case("a space in a header name", "GET / HTTP/1.1\r\nHost: svc\r\nX Y: 1\r\n\r\n").closes(&[400]).never(&["GET"]),
        case("two spaces in the request line", "GET  / HTTP/1.1\r\nHost: svc\r\n\r\n").closes(&[400]).never(&["GET"]),
        case("HTTP/1.2", "GET / HTTP/1.2\r\nHost: svc\r\n\r\n").closes(&[400]).never(&["GET"]),
        case("authority-form outside CONNECT", "GET svc:80 HTTP/1.1\r\nHost: svc\r\n\r\n")
            .closes(&[400])
            .never(&["GET"])
            .reference(Reference::Differs("hyper takes any target form with any method")),
        case("CONNECT", "CONNECT svc:443 HTTP/1.1\r\nHost: svc:443\r\n\r\n")
            .closes(&[405])
            .never(&["CONNECT"])
            .reference(Reference::Differs("hyper hands CONNECT to the service as an upgrade; the proxy opens no tunnels")),
        case("bare LF line ends", "GET /lf HTTP/1.1\nHost: svc\n\n").keeps(&[200]).saw(&["GET /lf HTTP/1.1\r\n"]),
        case("101 headers", format!("GET / HTTP/1.1\r\nHost: svc\r\n{}\r\n", "x: y\r\n".repeat(100)))
            .closes(&[431])
            .never(&["GET"]),
        case("a 64 KiB head", format!("GET / HTTP/1.1\r\nHost: svc\r\nx: {}\r\n\r\n", "a".repeat(64 * 1024)))
            .closes(&[431])
            .never(&["GET"]),
        case("a 100 KB head after a hand-off to hyper", format!(
            "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: svc\r\nx: {}\r\n\r\n",
            "a".repeat(100_000)
        ))
        .closes(&[200, 431])
        .requests(1),
        case("pipelined, the second moved to hyper, the third back on the same connection",
            "GET /1 HTTP/1.1\r\nHost: svc\r\n\r\nPOST /2 HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\nGET /3 HTTP/1.1\r\nHost: svc\r\n\r\n")
            .keeps(&[200, 200, 200])
            .requests(3),
        case("two Host headers after a hand-off to hyper",
            "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /2 HTTP/1.1\r\nHost: svc\r\nHost: evil\r\n\r\n")
            .closes(&[200, 400])
            .requests(1)
            .reference(Reference::Differs("hyper does not check Host")),
    ]
}

/// Slow and silent clients: none holds a connection past the header timeout.
fn slow() -> Vec<Case> {
    vec![
        case("a connection that sends only `PRI `", "PRI ").closes(&[]),
        case("a 65 KB target that never ends", format!("GET /{}", "a".repeat(65 * 1024)))
            .closes(&[414])
            .never(&["GET"])
            .reference(Reference::Differs(LINE_TOO_LONG)),
        case("a head that stops half-way", "GET / HTTP/1.1\r\nHost: svc\r\n").closes(&[]).never(&["GET"]),
        case("a head a byte at a time", "GET / HTTP/1.1\r\nHost: svc\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n")
            .drip()
            .closes(&[])
            .never(&["GET"]),
        case("an idle keep-alive connection", "GET / HTTP/1.1\r\nHost: svc\r\n\r\n").closes(&[200]),
        case(
            "an idle connection after a hand-off to hyper",
            "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        )
        .closes(&[200]),
    ]
}

const GET: &str = "GET /r HTTP/1.1\r\nHost: svc\r\n\r\n";
const GET_TWICE: &str = "GET /1 HTTP/1.1\r\nHost: svc\r\n\r\nGET /2 HTTP/1.1\r\nHost: svc\r\n\r\n";

/// Hostile upstreams: what they answer never reaches the client in a form it would misread.
fn responses() -> Vec<Case> {
    vec![
        case("Content-Length +2", GET).answer("HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nok").keeps(&[502]),
        case("two different Content-Lengths", GET)
            .answer("HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok")
            .keeps(&[502]),
        case("a chunk size +2: the connection is cut, nothing passes as a whole body", GET)
            .answer("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n+2\r\nok\r\n0\r\n\r\n")
            .closes(&[])
            .client_never(&["ok"]),
        case("101 to a request that asked for no upgrade", GET)
            .answer("HTTP/1.1 101 Switching Protocols\r\nupgrade: evil\r\nconnection: upgrade\r\n\r\n")
            .keeps(&[502])
            .client_never(&["HTTP/1.1 101", "evil"]),
        case("an interim 103 goes ahead of the answer", GET)
            .answer("HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .keeps(&[103, 200]),
        case("headers Connection names stay behind", GET)
            .answer("HTTP/1.1 200 OK\r\nconnection: x-up\r\nx-up: 1\r\ncontent-length: 2\r\n\r\nok")
            .keeps(&[200])
            .client_never(&["x-up: 1"]),
        case("both framings: chunked wins, no length travels", GET)
            .answer("HTTP/1.1 200 OK\r\ncontent-length: 100\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
            .keeps(&[200])
            .client_never(&["content-length: 100"]),
        case("bytes after the body are never the next answer", GET_TWICE)
            .answer(
                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\ninjected",
            )
            .keeps(&[200, 200])
            .client_never(&["injected"]),
        case("a head over 64 KiB", GET)
            .answer(Box::leak(
                format!("HTTP/1.1 200 OK\r\nx: {}\r\ncontent-length: 2\r\n\r\nok", "a".repeat(70_000)).into_boxed_str(),
            ))
            .keeps(&[502]),
        case("a NUL in a header", GET)
            .answer("HTTP/1.1 200 OK\r\nx: a\0b\r\ncontent-length: 2\r\n\r\nok")
            .keeps(&[502]),
        case("no answer at all", GET).answer("").keeps(&[502]),
    ]
}

/// Sends each case through the proxy, and (where hyper is the reference) to hyper's own server.
async fn check(cases: Vec<Case>) {
    let upstream = Recorder::start().await;
    let proxy = common::proxy_with(upstream.addr, Protocol::Http, |s| s.header_read_timeout = HEADER_TIMEOUT).await;
    let reference = reference_server().await;
    let mut failures = Vec::new();
    for case in cases {
        upstream.reset(case.answer);
        // An answer of nothing: the upstream closes at once.
        let got = send(proxy.outbound, &case.request, case.drip, case.held).await;
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
        if let Some(n) = case.requests.filter(|n| *n != upstream.requests.load(Ordering::SeqCst)) {
            wrong.push(format!("upstream framed {} requests, not {n}", upstream.requests.load(Ordering::SeqCst)));
        }
        wrong.extend(case.saw.iter().filter(|s| !seen.contains(*s)).map(|s| format!("upstream never saw {s:?}")));
        wrong.extend(case.never.iter().filter(|s| seen.contains(*s)).map(|s| format!("upstream saw {s:?}")));
        wrong.extend(case.client_never.iter().filter(|s| got.text.contains(*s)).map(|s| format!("client got {s:?}")));
        match case.reference {
            Reference::None => {}
            Reference::Same | Reference::Differs(_) if case.drip => {}
            Reference::Same => {
                let hyper = send(reference, &case.request, case.drip, case.held).await;
                if hyper.statuses() != case.statuses {
                    wrong.push(format!("hyper answers {:?}: say why the proxy differs", hyper.statuses()));
                }
            }
            Reference::Differs(why) => {
                let hyper = send(reference, &case.request, case.drip, case.held).await;
                if hyper.statuses() == case.statuses {
                    wrong.push(format!("hyper answers the same now; the stated difference ({why}) is gone"));
                }
            }
        }
        if !wrong.is_empty() {
            let request: String = String::from_utf8_lossy(&case.request).chars().take(160).collect();
            let text: String = got.text.chars().take(300).collect();
            let seen: String = seen.chars().take(300).collect();
            failures.push(format!(
                "{}: {}\n  sent {request:?}\n  got {text:?}\n  upstream saw {seen:?}",
                case.name,
                wrong.join("; ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// hyper's HTTP/1.1 server, set up as the proxy sets it up, answering `ok` to every request
/// whose body it could read.
async fn reference_server() -> SocketAddr {
    use http_body_util::BodyExt;
    common::spawn_app(|stream| async move {
        let svc = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
            let status = if req.into_body().collect().await.is_ok() { 200 } else { 400 };
            let resp =
                http::Response::builder().status(status).body(http_body_util::Full::new(bytes::Bytes::from("ok")));
            Ok::<_, std::convert::Infallible>(resp.unwrap())
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .max_header_size(64 * 1024)
            .max_headers(100);
        let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), svc).with_upgrades().await;
    })
    .await
}

#[tokio::test]
async fn request_smuggling_is_refused() {
    check(smuggling()).await;
}

#[tokio::test]
async fn request_framing_is_as_strict_as_rfc_9112() {
    check(framing()).await;
}

#[tokio::test]
async fn slow_and_silent_clients_are_let_go() {
    check(slow()).await;
}

#[tokio::test]
async fn hostile_upstream_answers_never_reach_the_client_as_sent() {
    check(responses()).await;
}
