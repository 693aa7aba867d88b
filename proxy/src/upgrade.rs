//! Connection upgrades (WebSocket and friends): the proxy forwards the handshake, and once
//! both sides answer `101 Switching Protocols` it copies bytes both ways until either closes.

use crate::Body;
use crate::client::HttpClient;
use crate::errors::ProxyError;
use crate::transport::set_target;
use http::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;

/// `Connection: upgrade` with an `Upgrade` protocol.
pub fn is_upgrade(headers: &http::HeaderMap) -> bool {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade && headers.contains_key(header::UPGRADE)
}

/// Forwards an upgrade handshake to `addr` over HTTP/1.1 and, on 101, splices the two
/// upgraded connections together in the background.
pub async fn forward(
    client: &HttpClient,
    mut req: Request<crate::ReqBody>,
    addr: &str,
) -> Result<Response<Body>, ProxyError> {
    let client_side = hyper::upgrade::on(&mut req);
    let protocol = req.headers().get(header::UPGRADE).cloned();
    let mut up = req;
    set_target(&mut up, addr)?;
    *up.version_mut() = http::Version::HTTP_11;
    // `set_target` drops connection-level headers; an upgrade needs these two back.
    if let Some(p) = protocol {
        up.headers_mut().insert(header::UPGRADE, p);
    }
    up.headers_mut().insert(header::CONNECTION, http::HeaderValue::from_static("upgrade"));
    let mut resp =
        client.request(up).await.map_err(|e| ProxyError::Upstream { addr: addr.to_string(), source: e.into() })?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upstream_side = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            match tokio::try_join!(client_side, upstream_side) {
                Ok((a, b)) => {
                    let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(a), &mut TokioIo::new(b)).await;
                }
                Err(e) => tracing::debug!(error = %e, "upgrade did not complete"),
            }
        });
    }
    Ok(crate::client::downstream(resp))
}
