//! Opaque TCP: services of `protocol: tcp` (a database, a message broker) carried as byte
//! streams. The application reaches one through a local listener of its own (Consul Connect's
//! upstreams: `TRELLIS_TCP_UPSTREAMS=postgres=127.0.0.1:15432`); the proxy picks an endpoint by
//! the service's weights and balancer, speaks mTLS to its proxy, and splices the bytes. On the
//! callee's side, every connection to the inbound listener of a TCP service is the
//! application's, once access policy admits the caller's identity. Each connection is counted
//! opened and closed, with its bytes each way and how long it was open; one that could not be
//! made is tried on another endpoint, then counted as a connect failure.

use crate::Shared;
use crate::decide::access::{Caller, Decision};
use crate::decide::split;
use crate::sync::Shutdown;
use crate::transport::Stream;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use trellis_model::config::Protocol;
use trellis_model::telemetry::Direction;

/// A connection to an endpoint must be made (TCP and TLS) within this, or the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Endpoints tried for one connection before the application's connection is closed.
const CONNECT_TRIES: usize = 3;

/// Accepts the application's connections to `service` on `listener` until shutdown.
pub async fn serve_upstream(shared: Arc<Shared>, listener: TcpListener, service: String, mut shutdown: Shutdown) {
    loop {
        let client = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => client,
                Err(e) => {
                    tracing::warn!(error = %e, %service, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.recv() => return,
        };
        let _ = client.set_nodelay(true);
        tokio::spawn(outbound(shared.clone(), client, service.clone()));
    }
}

/// One application connection: an endpoint of `service`, then the bytes both ways.
async fn outbound(shared: Arc<Shared>, mut client: TcpStream, service: String) {
    let applied = shared.config.load_full();
    let Some(svc) = applied.service(&service).filter(|s| s.protocol == Protocol::Tcp) else {
        let why =
            if applied.version.is_empty() { "no configuration yet" } else { "not a tcp service this proxy may call" };
        tracing::info!(%service, why, "TCP connection refused");
        shared.metrics.tcp.failed(Direction::Outbound, &service, "");
        return;
    };
    // A TCP service splits by its rule for every request: the first without matches.
    let rule = svc.rules.iter().find(|r| r.matches.is_empty()).or(svc.rules.first());
    let backends = rule.map(|r| r.backends.as_slice()).unwrap_or_default();
    let Some((_, backend)) = split::pick_backend(backends, fastrand::u32(0..split::total_weight(backends).max(1)))
    else {
        shared.metrics.tcp.failed(Direction::Outbound, &service, "");
        return;
    };
    let version = backend.version.clone();
    let all = applied.endpoints.get(&service).map(Vec::as_slice).unwrap_or_default();
    // Each try goes to an endpoint not tried yet.
    let mut untried: Vec<_> = all.iter().filter(|e| e.version == version).cloned().collect();
    for _ in 0..CONNECT_TRIES {
        let Some((at, in_flight)) = shared.endpoints.pick(svc.traffic.load_balancer, &untried, &version) else { break };
        let endpoint = untried.swap_remove(at);
        let started = crate::clock::now();
        let connecting = connect(&shared, &endpoint.addr, endpoint.identity.as_deref());
        let why = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok(mut upstream)) => {
                let _in_flight = in_flight;
                splice(&shared, Direction::Outbound, (&service, &version), &mut client, &mut upstream).await;
                return;
            }
            Ok(Err(e)) => e,
            Err(_) => format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
        };
        tracing::info!(%service, endpoint = %endpoint.addr, %why, "TCP connect failed");
        // As a 503 would: consecutive failures eject the endpoint for HTTP and TCP alike.
        let (outcome, took) = (crate::decide::outlier::Outcome::GatewayError, (started, crate::clock::now()));
        shared.endpoints.record(&in_flight, &endpoint.addr, took, outcome, all, &svc.traffic.outlier);
    }
    shared.metrics.tcp.failed(Direction::Outbound, &service, &version);
}

/// TCP to `addr`, then mTLS when the endpoint has an identity and this proxy a certificate.
async fn connect(
    shared: &Shared,
    addr: &str,
    identity: Option<&str>,
) -> Result<Stream<tokio_rustls::client::TlsStream<TcpStream>>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let (Some(identity), Some(tls)) = (identity, shared.tls.load_full()) else { return Ok(Stream::Plain(tcp)) };
    let name =
        crate::transport::tls::server_name(identity).ok_or_else(|| format!("{identity} is not a mesh identity"))?;
    let stream = tokio_rustls::TlsConnector::from(tls.client(false))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("mTLS to {identity}: {e}"))?;
    Ok(Stream::Tls(Box::new(stream)))
}

/// Whether this proxy's own service is carried as opaque TCP, as its config says.
pub fn is_own_service_tcp(shared: &Shared) -> bool {
    let applied = shared.config.load();
    applied.services.get(&shared.settings.service).is_some_and(|s| s.protocol == Protocol::Tcp)
}

/// A caller's connection to this proxy's TCP service: access policy on its identity (no path,
/// no method: a rule that names any admits no stream), then the application's bytes.
pub async fn inbound<S: AsyncRead + AsyncWrite + Unpin>(shared: Arc<Shared>, mut caller_io: S, caller: Caller<'_>) {
    let settings = &shared.settings;
    let (service, version) = (settings.service.as_str(), settings.version.as_str());
    let decision = {
        let applied = shared.config.load();
        match applied.services.get(service) {
            Some(s) => {
                crate::decide::access::decide(&applied.mesh, &s.access, settings.has_identity(), &caller, "", "")
            }
            None => return,
        }
    };
    if let Decision::Deny { by, why } = decision {
        tracing::info!(caller = caller.label(), %by, %why, "TCP connection denied");
        shared.metrics.denied(caller.label(), &by);
        return;
    }
    let why = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(settings.app_addr)).await {
        Ok(Ok(mut app)) => {
            let _ = app.set_nodelay(true);
            splice(&shared, Direction::Inbound, (service, version), &mut caller_io, &mut app).await;
            return;
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
    };
    tracing::warn!(app = %settings.app_addr, %why, "cannot reach the application for a TCP connection");
    shared.metrics.tcp.failed(Direction::Inbound, service, version);
}

/// Copies both ways until both sides are done, then counts the connection. `from` is the side
/// the connection came from: what it sends goes toward the service.
async fn splice<A, B>(shared: &Shared, direction: Direction, (service, version): (&str, &str), from: &mut A, to: &mut B)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let tcp = &shared.metrics.tcp;
    tcp.opened(direction, service, version);
    let started = std::time::Instant::now();
    // Counted as the bytes pass, so that a connection that ends in an error (a reset) still
    // counts what it carried.
    let mut from = Counted { io: from, read: 0, written: 0 };
    if let Err(e) = tokio::io::copy_bidirectional(&mut from, to).await {
        tracing::debug!(error = %e, %service, "TCP connection ended with an error");
    }
    tcp.closed(direction, service, version, (from.read, from.written), started.elapsed().as_secs_f64());
}

/// A stream that counts the bytes read from it and written to it.
struct Counted<'a, S> {
    io: &'a mut S,
    read: u64,
    written: u64,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<'_, S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut *self.io).poll_read(cx, buf);
        self.read += (buf.filled().len() - before) as u64;
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<'_, S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut *self.io).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &polled {
            self.written += *n as u64;
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.io).poll_shutdown(cx)
    }
}
