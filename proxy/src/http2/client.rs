//! The proxy's HTTP/2 client: one connection to an upstream, driven by a task of its own.
//!
//! h2's client (under hyper's, then alone) took some 23,000 instructions per gRPC call in its
//! connection task and 8,700 in HPACK-encoding the request (`bench/README.md`, "gRPC: where the
//! time goes"). Here a caller encodes its request's head itself, plain literals and no table
//! ([`super::request`]), and queues it for the connection's task. That task opens the stream,
//! sends the body as the windows allow, and writes what every stream produced with one write
//! per pass, as the server does. The response's head comes back through an exchange the
//! caller awaits; its body is a queue the task fills.

use super::body::Credit;
use super::conn::open::{self, Answer, Responding};
use super::conn::{Role, State};
use super::link::Link;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

pub use super::conn::open::Request;
pub use super::conn::{Broken, Sending};
pub use super::request::encode;

/// The server's SETTINGS must arrive within this.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Sends requests on one connection. Cheap to clone; the connection closes once every handle
/// is dropped and its streams are done.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::UnboundedSender<(Request, Answer)>,
    credit: Arc<Credit>,
}

impl Handle {
    /// Starts a client connection over `io` (after its TCP and TLS handshakes), driven by a
    /// task of its own.
    pub fn start<IO>(io: IO, name: Box<str>) -> Handle
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = State::new(Role::Client);
        let credit = state.credit.clone();
        let mut c = Connection { link: Link::new(io, HANDSHAKE), state, rx, closed: false };
        tokio::spawn(async move {
            if let Err(e) = std::future::poll_fn(|cx| c.poll(cx)).await {
                tracing::debug!(upstream = %name, error = %e, "upstream HTTP/2 connection failed");
            }
            c.end();
        });
        Handle { tx, credit }
    }

    /// Whether the connection takes no more requests: it ended, or either end sent GOAWAY.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Queues `req` for the connection; `Err` gives it back when the connection takes no more.
    pub fn send(&self, req: Request) -> Result<Responding, Request> {
        let (answer, responding) = open::exchange(self.credit.clone());
        match self.tx.send((req, answer)) {
            Ok(()) => Ok(responding),
            Err(mpsc::error::SendError((req, _))) => Err(req),
        }
    }
}

struct Connection<IO> {
    link: Link<IO>,
    state: State,
    rx: mpsc::UnboundedReceiver<(Request, Answer)>,
    /// No request will come: every handle is gone, or the connection takes no more.
    closed: bool,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Connection<IO> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), super::Error>> {
        let (link, state) = (&mut self.link, &mut self.state);
        link.begin(state, cx)?;
        for _ in 0..16 {
            let Some(mut progress) = link.read(state, &mut Vec::new(), cx)? else {
                return Poll::Ready(Err(super::Error::Io(std::io::ErrorKind::UnexpectedEof.into())));
            };
            if !self.closed && !state.open_at_all() {
                // Requests still queued will not be sent: their callers may try elsewhere.
                self.closed = true;
                refuse_queued(&mut self.rx);
            }
            state.credit();
            if link.room(state) {
                state.pump_all(cx);
            }
            // After what may have closed streams, so that their room goes to the next requests.
            while !self.closed && state.can_open() && link.room(state) {
                match self.rx.poll_recv(cx) {
                    Poll::Ready(Some((req, answer))) => {
                        progress = true;
                        state.open(req, answer, cx);
                    }
                    Poll::Ready(None) => self.closed = true,
                    Poll::Pending => break,
                }
            }
            let done = self.closed || !state.open_at_all();
            if let Some(poll) = link.end_pass(state, done, progress, cx) {
                return poll;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// The connection is over: streams in flight fail, and requests still queued go back
    /// unsent.
    fn end(&mut self) {
        self.state.abandon(Broken::Other("the upstream's HTTP/2 connection ended"));
        refuse_queued(&mut self.rx);
    }
}

/// Takes no more requests, and answers those queued as never sent.
fn refuse_queued(rx: &mut mpsc::UnboundedReceiver<(Request, Answer)>) {
    rx.close();
    while let Ok((_, answer)) = rx.try_recv() {
        answer.fail(Broken::Refused);
    }
}

#[cfg(test)]
mod tests;
