//! The accept loop every listener shares: HTTP/1.1 and h2 (cleartext or over the transport
//! `accept` makes of each connection), graceful drain on shutdown.

use crate::sync::Shutdown;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

pub use crate::transport::Peer;
use crate::transport::h1::MAX_HEAD as MAX_HEADER_BYTES;
use crate::transport::with_peer;

/// The transport of a listener that takes connections as they come.
pub async fn plain(stream: TcpStream) -> Option<(TcpStream, Peer)> {
    Some((stream, Peer::Plaintext))
}

/// Serves until `shutdown` flips, then gives requests in flight up to `grace` to finish.
/// Each connection must deliver each request's head within `header_timeout`, from its
/// first byte or from the end of the previous request (idle keep-alive included), on the
/// proxy's own server and on hyper's alike.
/// `accept` turns each connection into its transport (a TLS handshake, say), or drops it.
/// Each connection starts on the proxy's own HTTP/1.1 server; one that opens with HTTP/2's
/// preface moves to the proxy's own HTTP/2 server ([`crate::http2`]), and one whose request
/// needs it (an upgrade, a streamed body) to hyper's HTTP/1.1 server.
pub async fn serve<A, AFut, IO, S>(
    listener: TcpListener,
    accept: A,
    service: S,
    mut shutdown: Shutdown,
    grace: Duration,
    header_timeout: Duration,
) where
    A: Fn(TcpStream) -> AFut + Clone + Send + Sync + 'static,
    AFut: Future<Output = Option<(IO, Peer)>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + crate::transport::h1::Socket + crate::batch::Wire + Unpin + Send + Sync + 'static,
    S: crate::stack::Listener,
{
    // Every connection's task holds a sender; all are gone once every connection closed.
    let (open, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    // Shared: a connection's task holds a pointer, not two builders.
    let hyper = std::sync::Arc::new(Hyper::new(header_timeout));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.recv() => break,
        };
        let _ = stream.set_nodelay(true);
        let (mut service, accept, hyper) = (service.clone(), accept.clone(), hyper.clone());
        let (open, stop) = (open.clone(), shutdown.clone());
        // The transport is made in the connection's own task: a slow handshake holds no one else.
        tokio::spawn(crate::clock::Clocked::new(async move {
            let _open = open;
            let Some((io, who)) = accept(stream).await else { return };
            let served = crate::transport::h1::serve_connection(io, &who, &mut service, header_timeout, &stop).await;
            let crate::transport::h1::Served::Handoff(io) = served else { return };
            // Boxed: the other server's connection state would otherwise sit in every
            // connection's task, and most connections never leave the proxy's own HTTP/1.1.
            let ended = match io.is_http2() {
                true => Box::pin(crate::http2::serve(io, who, service, stop, header_timeout))
                    .await
                    .map_err(|e| e.to_string()),
                false => Box::pin(hyper.serve(io, who, service, stop)).await.map_err(|e| e.to_string()),
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }));
    }
    drop((listener, open));
    let drained = async { while all_closed.recv().await.is_some() {} };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!("drain grace elapsed with requests still in flight");
    }
}

/// hyper's HTTP/1.1 server, for the connections the proxy's own hands over with a request it
/// does not serve itself (the hand-off always holds a whole head, so there is nothing left to
/// sniff).
struct Hyper {
    http1: hyper::server::conn::http1::Builder,
}

impl Hyper {
    fn new(header_timeout: Duration) -> Self {
        let mut http1 = hyper::server::conn::http1::Builder::new();
        // Bounded heads, and no connection may hold the proxy by sending them slowly.
        http1
            .timer(TokioTimer::new())
            .max_header_size(MAX_HEADER_BYTES)
            .max_headers(100)
            .header_read_timeout(header_timeout);
        Hyper { http1 }
    }

    /// Serves the rest of a connection; a shutdown lets the request in flight finish.
    async fn serve<IO, S>(
        &self,
        io: crate::transport::h1::Rewind<IO>,
        who: Peer,
        service: S,
        mut stop: Shutdown,
    ) -> Result<(), hyper::Error>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static,
        S: crate::stack::Listener,
    {
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let (mut parts, body) = req.into_parts();
            // What the proxy's own server checks as it reads a head, hyper's heads get here.
            let checked = crate::transport::h1::check_parsed(&mut parts);
            let version = parts.version;
            let mut req = http::Request::from_parts(parts, body.map_err(Into::into).boxed_unsync());
            with_peer(&mut req, &who);
            let answer = checked.map(|()| service.clone().call(req));
            async move {
                let mut resp = match answer {
                    Ok(answer) => answer.await?,
                    Err(refused) => crate::transport::h1::refusal(refused, version),
                };
                // hyper writes the map: the upstream's raw header lines go into it first.
                crate::transport::h1::into_header_map(&mut resp);
                Ok::<_, std::convert::Infallible>(resp)
            }
        });
        let stopped = async move { stop.recv().await };
        let conn = self.http1.serve_connection(TokioIo::new(io), service).with_upgrades();
        drain(conn, stopped, |c| c.graceful_shutdown()).await
    }
}

/// Runs a connection until it ends; once `stopped`, it is asked to finish what is in flight
/// and close.
async fn drain<C, T>(conn: C, stopped: impl Future<Output = ()>, shut: impl FnOnce(std::pin::Pin<&mut C>)) -> T
where
    C: Future<Output = T>,
{
    tokio::pin!(conn);
    tokio::select! {
        done = conn.as_mut() => return done,
        () = stopped => shut(conn.as_mut()),
    }
    conn.await
}
