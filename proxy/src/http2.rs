//! The proxy's own HTTP/2 server (RFC 9113), for the connections that open with HTTP/2's
//! preface, cleartext or inside the listener's TLS.
//!
//! hyper's server (on h2) spent half of a gRPC call's instructions through the proxy: HPACK
//! that hashes every field into its table and Huffman-codes every string, frames moved
//! through queues behind a lock, and a task for each stream (`bench/README.md`, "gRPC: where
//! the time goes"). Here one task serves a connection: it reads frames into [`conn::State`],
//! polls the service's futures and the response bodies itself, and writes what they produced
//! with one write per pass. The encoder sends plain literals ([`hpack`]).
//!
//! Limits, beside the protocol's own rules: 200 streams at once, 64 KB of headers, header
//! blocks of 256 KB across CONTINUATION frames, 400 resets and 1,000 empty DATA frames from a
//! client per second; past those the connection ends with ENHANCE_YOUR_CALM.

mod body;
mod conn;
mod frame;
mod hpack;
mod huffman;
mod request;
mod response;

use crate::sync::Shutdown;
use crate::transport::Peer;
use bytes::BytesMut;
use conn::{Event, Fault, State};
use futures::StreamExt;
use futures::future::Abortable;
use futures::stream::FuturesUnordered;
use std::convert::Infallible;
use std::future::Future;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection is pinged this often, and closed when a ping goes unanswered as long.
const KEEPALIVE: Duration = Duration::from_secs(20);
/// Bytes read at once.
const READ: usize = 16 * 1024;
/// Past this much unsent, the connection stops reading and pumping bodies until it drains.
const HIGH_WATER: usize = 256 * 1024;

/// What serves each stream: the listener's stack.
pub trait Service:
    tower_service::Service<
        http::Request<crate::ReqBody>,
        Response = http::Response<crate::Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
{
}

impl<S> Service for S where
    S: tower_service::Service<
            http::Request<crate::ReqBody>,
            Response = http::Response<crate::Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
{
}

/// Whether a field is one of HTTP/1.1's connection headers, which HTTP/2 forbids both ways
/// (RFC 9113 §8.2.2): `te` is allowed only as `trailers`.
fn connection_specific(name: &http::HeaderName, value: &[u8]) -> bool {
    use http::header::{CONNECTION, HeaderName, TE, TRANSFER_ENCODING, UPGRADE};
    const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
    const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
    [CONNECTION, TRANSFER_ENCODING, UPGRADE, KEEP_ALIVE, PROXY_CONNECTION].contains(name)
        || (*name == TE && value != b"trailers")
}

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP/2 protocol error ({:?}): {}", .0.0, .0.1)]
    Protocol(Fault),
}

/// Serves a connection whose first bytes are HTTP/2's preface until the client closes it or,
/// once `stop` fires, until its streams are done. The client's SETTINGS must arrive within
/// `handshake_timeout`.
pub async fn serve<IO, S>(
    io: IO,
    who: Peer,
    service: S,
    mut stop: Shutdown,
    handshake_timeout: Duration,
) -> Result<(), Error>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    S: Service,
{
    let mut c = Connection {
        io,
        read: BytesMut::new(),
        state: State::new(),
        written: 0,
        futures: FuturesUnordered::new(),
        events: Vec::new(),
        service,
        who,
        timer: Box::pin(tokio::time::sleep(handshake_timeout)),
    };
    let stopped = stop.recv();
    tokio::pin!(stopped);
    std::future::poll_fn(|cx| {
        if c.state.goaway.is_none() && stopped.as_mut().poll(cx).is_ready() {
            c.state.shutdown();
        }
        c.poll(cx)
    })
    .await
}

pin_project_lite::pin_project! {
    /// A service's future with the stream it answers.
    struct Tagged<F> {
        id: u32,
        #[pin]
        inner: F,
    }
}

impl<F: Future> Future for Tagged<F> {
    type Output = (u32, F::Output);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = ready!(this.inner.poll(cx));
        Poll::Ready((*this.id, out))
    }
}

struct Connection<IO, S: Service> {
    io: IO,
    read: BytesMut,
    state: State,
    /// Bytes of `state.out` already written.
    written: usize,
    futures: FuturesUnordered<Abortable<Tagged<S::Future>>>,
    events: Vec<Event>,
    service: S,
    who: Peer,
    /// The handshake's deadline, then the keep-alive's next ping.
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<IO: AsyncRead + AsyncWrite + Unpin, S: Service> Connection<IO, S> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if let Err(fault) = self.timer(cx) {
            return self.fail(cx, fault);
        }
        self.state.credit.connection.register(cx.waker());
        // A few rounds at most before letting other tasks run.
        for _ in 0..16 {
            let mut progress = false;
            if self.unsent() < HIGH_WATER {
                match self.poll_read(cx) {
                    Poll::Ready(Ok(true)) => progress = true,
                    // The client closed: nothing it asked for can reach it any more.
                    Poll::Ready(Ok(false)) => return Poll::Ready(Ok(())),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
                if let Err(fault) = self.state.read(&mut self.read, &mut self.events) {
                    return self.fail(cx, fault);
                }
            }
            for event in self.events.drain(..) {
                match event {
                    Event::Request(id, mut req, registration) => {
                        crate::transport::with_peer(&mut req, &self.who);
                        let inner = tower_service::Service::call(&mut self.service.clone(), req);
                        self.futures.push(Abortable::new(Tagged { id, inner }, registration));
                    }
                    Event::Refused(id, resp) => self.state.respond(id, resp, cx),
                }
            }
            while let Poll::Ready(Some(answered)) = self.futures.poll_next_unpin(cx) {
                progress = true;
                // An aborted future's stream was reset: nothing to send.
                if let Ok((id, Ok(resp))) = answered {
                    self.state.respond(id, resp, cx);
                }
            }
            self.state.credit();
            if self.unsent() < HIGH_WATER {
                self.state.pump_all(cx);
            }
            match self.poll_write(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => {}
            }
            let done = self.state.goaway.is_some() || self.state.peer_goaway;
            if done && self.state.streams.is_empty() && self.unsent() == 0 {
                return Pin::new(&mut self.io).poll_shutdown(cx).map(|r| r.map_err(Error::from));
            }
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn unsent(&self) -> usize {
        self.state.out.len() - self.written
    }

    /// Reads what has arrived after what is buffered: `Ok(true)` if something did, `Ok(false)`
    /// at the end. Through a buffer on the stack, copied: room reserved in `read` for every read
    /// made it allocate again while the frames sliced from it were still held (callgrind, one
    /// run each: 58.0k instructions per gRPC call against 57.2k with the copy).
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, Error>> {
        let mut scratch = [MaybeUninit::<u8>::uninit(); READ];
        let mut buf = ReadBuf::uninit(&mut scratch);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
        self.read.extend_from_slice(buf.filled());
        Poll::Ready(Ok(!buf.filled().is_empty()))
    }

    /// Writes what is queued until the socket takes no more.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.unsent() == 0 {
            return Poll::Ready(Ok(()));
        }
        while self.unsent() > 0 {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.state.out[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.written = 0;
        self.state.out.clear();
        // A burst's buffer is not kept by an idle connection.
        if self.state.out.capacity() > 64 * 1024 {
            self.state.out = Vec::with_capacity(1024);
        }
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        Poll::Ready(Ok(()))
    }

    /// The handshake's deadline; then a ping every [`KEEPALIVE`], and an end to a connection
    /// that left the last one unanswered.
    fn timer(&mut self, cx: &mut Context<'_>) -> Result<(), Fault> {
        while self.timer.as_mut().poll(cx).is_ready() {
            if !self.state.got_settings {
                return Err(Fault(frame::Reason::PROTOCOL_ERROR, "no SETTINGS within the handshake timeout"));
            }
            if self.state.ping_out {
                return Err(Fault(frame::Reason::NO_ERROR, "a keep-alive ping went unanswered"));
            }
            frame::ping(&mut self.state.out, 0, b"trellis!");
            self.state.ping_out = true;
            self.timer.as_mut().reset(tokio::time::Instant::now() + KEEPALIVE);
        }
        Ok(())
    }

    /// Ends the connection for `fault`: GOAWAY, written as far as the socket takes it now.
    fn fail(&mut self, cx: &mut Context<'_>, fault: Fault) -> Poll<Result<(), Error>> {
        tracing::debug!(peer = ?self.who, reason = ?fault.0, why = fault.1, "HTTP/2 connection error");
        self.state.fail(&fault);
        let _ = self.poll_write(cx);
        Poll::Ready(Err(Error::Protocol(fault)))
    }
}

#[cfg(test)]
mod tests;
