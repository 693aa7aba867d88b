//! The proxy's own HTTP/2 (RFC 9113): the server, for the connections that open with HTTP/2's
//! preface, cleartext or inside the listener's TLS; and the client ([`client`]) to upstreams
//! declared `http2` or `grpc`.
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
pub mod client;
mod conn;
pub(crate) mod frame;
mod head;
mod hpack;
mod huffman;
mod link;
mod request;
mod response;

use crate::sync::Shutdown;
use crate::transport::Peer;
use conn::{Event, Fault, Role, State};
use futures::StreamExt;
use futures::future::Abortable;
use futures::stream::FuturesUnordered;
use link::Link;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

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
        link: Link::new(io, handshake_timeout),
        state: State::new(Role::Server),
        futures: FuturesUnordered::new(),
        events: Vec::new(),
        service,
        who,
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
    link: Link<IO>,
    state: State,
    futures: FuturesUnordered<Abortable<Tagged<S::Future>>>,
    events: Vec<Event>,
    service: S,
    who: Peer,
}

impl<IO: AsyncRead + AsyncWrite + Unpin, S: Service> Connection<IO, S> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let (link, state) = (&mut self.link, &mut self.state);
        link.begin(state, cx)?;
        // A few rounds at most before letting other tasks run.
        for _ in 0..16 {
            // The client closed: nothing it asked for can reach it any more.
            let Some(mut progress) = link.read(state, &mut self.events, cx)? else { return Poll::Ready(Ok(())) };
            for event in self.events.drain(..) {
                match event {
                    Event::Request(id, mut req, registration) => {
                        crate::transport::with_peer(&mut req, &self.who);
                        let inner = tower_service::Service::call(&mut self.service.clone(), req);
                        self.futures.push(Abortable::new(Tagged { id, inner }, registration));
                    }
                    Event::Refused(id, resp) => state.respond(id, resp, cx),
                }
            }
            while let Poll::Ready(Some(answered)) = self.futures.poll_next_unpin(cx) {
                progress = true;
                // An aborted future's stream was reset: nothing to send.
                if let Ok((id, Ok(resp))) = answered {
                    state.respond(id, resp, cx);
                }
            }
            state.credit();
            if link.room(state) {
                state.pump_all(cx);
            }
            let done = state.goaway.is_some() || state.peer_goaway.is_some();
            if let Some(poll) = link.end_pass(state, done, progress, cx) {
                return poll;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
pub(crate) mod tests;
