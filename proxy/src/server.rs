//! The accept loop every listener shares: HTTP/1.1 and h2 (cleartext or over the transport
//! `accept` makes of each connection), graceful drain on shutdown.

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What a connection proved about its peer before HTTP started.
#[derive(Clone, Debug)]
pub enum Peer {
    Plaintext,
    /// mTLS; the mesh service its client certificate names, if it names one of this trust
    /// domain's (resolved once per connection, not per request).
    Mtls(Option<std::sync::Arc<str>>),
}

/// The transport of a listener that takes connections as they come.
pub async fn plain(stream: TcpStream) -> Option<(TcpStream, Peer)> {
    Some((stream, Peer::Plaintext))
}

/// Puts a verified caller in the request's extensions for the access layer; plaintext, the
/// default, costs nothing.
pub fn with_peer<B>(req: &mut http::Request<B>, peer: &Peer) {
    if let Peer::Mtls(_) = peer {
        req.extensions_mut().insert(peer.clone());
    }
}

/// Requests whose headers exceed this are refused (431 / stream reset).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Serves until `shutdown` flips, then gives requests in flight up to `grace` to finish.
/// Each connection must deliver each request's head within `header_timeout`, from its
/// first byte or from the end of the previous request (idle keep-alive included), on the
/// proxy's own server and on hyper's alike.
/// `accept` turns each connection into its transport (a TLS handshake, say), or drops it.
/// Each connection starts on the proxy's own HTTP/1.1 server and moves to hyper (HTTP/2,
/// upgrades, streamed bodies) at its first request that needs it.
pub async fn serve<A, AFut, IO, S>(
    listener: TcpListener,
    accept: A,
    service: S,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
    header_timeout: Duration,
) where
    A: Fn(TcpStream) -> AFut + Clone + Send + Sync + 'static,
    AFut: Future<Output = Option<(IO, Peer)>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + crate::h1::Socket + crate::transport::Wire + Unpin + Send + Sync + 'static,
    S: crate::stack::Listener,
{
    let graceful = GracefulShutdown::new();
    // Every connection's task holds a sender; all are gone once every connection closed.
    let (open, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Bounded headers, and no connection may hold the proxy by sending them slowly.
    builder
        .http1()
        .timer(TokioTimer::new())
        .max_buf_size(MAX_HEADER_BYTES)
        .max_headers(100)
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .keep_alive_interval(Some(Duration::from_secs(20)));
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
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let (mut service, accept, builder, watcher) =
            (service.clone(), accept.clone(), builder.clone(), graceful.watcher());
        let (open, mut stop) = (open.clone(), shutdown.clone());
        // The transport is made in the connection's own task: a slow handshake holds no one else.
        tokio::spawn(crate::clock::Clocked::new(async move {
            let _open = open;
            let Some((io, who)) = accept(stream).await else { return };
            let served = crate::h1::serve_connection(io, &who, &mut service, header_timeout, &mut stop).await;
            let crate::h1::Served::Handoff(io) = served else { return };
            let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let (mut parts, body) = req.into_parts();
                // What the proxy's own server checks as it reads a head, hyper's heads get here.
                let checked = crate::h1::check_parsed(&mut parts);
                let version = parts.version;
                let mut req = http::Request::from_parts(parts, body.boxed_unsync());
                with_peer(&mut req, &who);
                let answer = checked.map(|()| service.clone().call(req));
                async move {
                    let mut resp = match answer {
                        Ok(answer) => answer.await?,
                        Err(refused) => crate::h1::refusal(refused, version),
                    };
                    // hyper writes the map: the upstream's raw header lines go into it first.
                    crate::h1::into_header_map(&mut resp);
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }));
    }
    drop((listener, open));
    let drained = async {
        graceful.shutdown().await;
        while all_closed.recv().await.is_some() {}
    };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!("drain grace elapsed with requests still in flight");
    }
}
