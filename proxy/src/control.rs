//! Following the control plane: one long-lived stream of configs (newline-delimited JSON: one
//! full config, then deltas of what changed), an ACK or NACK for the newest config applied
//! (sent on the same connection when it is upgraded, else beside it; never holding up its
//! reading), and reconnection with jittered backoff. A reconnecting proxy names the version
//! it runs, so a replica that has the same config for it sends nothing, and one that can tell
//! what changed sends a delta. A lost replica is left for the next one at once; backoff grows
//! only once every replica has failed in a row. While disconnected the proxy keeps serving
//! its last applied config.

pub mod certify;

use crate::Shared;
use crate::client::link;
use bytes::BytesMut;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, ReadHalf};
use trellis_model::ProxyConfig;
use trellis_model::fleet::{self, Ack, Registration, StreamMessage};

/// The longest gap between pings the proxy accepts: a control plane serving thousands of
/// proxies pings each less often, and a dead stream is noticed after three missed pings
/// (at most 30.5 s; 6.5 s at the two seconds of a small fleet).
pub const MAX_PING_EVERY_S: u64 = 10;
/// A snapshot larger than this is refused rather than buffered without bound.
const MAX_MESSAGE: usize = 16 << 20;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

type CpClient = crate::client::ControlPlane;

#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("cannot reach the control plane: {0}")]
    Connect(String),
    #[error("control plane answered {0}")]
    Status(http::StatusCode),
    #[error("stream broke: {0}")]
    Body(#[from] hyper::Error),
    #[error("stream broke: {0}")]
    Read(std::io::Error),
    #[error("no message for {0:?}")]
    Idle(Duration),
    #[error("message larger than {MAX_MESSAGE} bytes")]
    TooLarge,
    #[error(transparent)]
    Gap(#[from] trellis_model::fleet::Gap),
}

pub async fn follow(
    shared: Arc<Shared>,
    client: CpClient,
    registration: Registration,
    mut shutdown: crate::sync::Shutdown,
) {
    let mut backoff = BACKOFF_MIN;
    client.targets.resolve().await;
    if !shared.wait_for_identity(&mut shutdown).await {
        return;
    }
    // Answers go out from a task of their own, one for every stream the proxy opens, so that
    // reading a stream never waits on one and they reach the control plane in order.
    let (answers, newest) = tokio::sync::watch::channel(None);
    tokio::spawn(send_answers(client.clone(), newest));
    loop {
        let target = client.targets.current().map(|t| t.base).unwrap_or_default();
        let result = tokio::select! {
            r = stream_once(&client, &shared, &registration, &answers, &mut backoff) => r,
            () = shutdown.recv() => return,
        };
        // A replica that closed the stream is going away (a restart): follow another too.
        let round = client.targets.fail();
        let next = client.targets.current().map(|t| t.base).unwrap_or_default();
        match result {
            Ok(()) => tracing::info!(%target, %next, "the control plane closed the config stream"),
            Err(e) => {
                tracing::warn!(%target, %next, error = %e, "config stream down; serving the last config")
            }
        }
        // Another replica is tried at once (jittered a little, so that a replica's whole fleet
        // does not arrive in one instant); after a full round of failures, back off, with full
        // jitter to spread a fleet's reconnects, and look the names up again.
        let wait = if round {
            client.targets.resolve().await;
            let wait = backoff.mul_f64(0.5 + fastrand::f64() * 0.5);
            backoff = (backoff * 2).min(BACKOFF_MAX);
            wait
        } else {
            BACKOFF_MIN.mul_f64(fastrand::f64())
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            () = shutdown.recv() => return,
        }
    }
}

async fn stream_once(
    client: &CpClient,
    shared: &Shared,
    registration: &Registration,
    answers: &tokio::sync::watch::Sender<Option<Ack>>,
    backoff: &mut Duration,
) -> Result<(), StreamError> {
    let running = shared.config.load().version.clone();
    let registration = Registration { resume: (!running.is_empty()).then_some(running), ..registration.clone() };
    let body = serde_json::to_vec(&registration).unwrap_or_default();
    let (mut source, ping_every) = match client.open_stream(body).await.map_err(StreamError::Connect)? {
        link::Opened::Duplex(io, ping_every) => (Source::Duplex(client.link.attach(io).await), ping_every),
        link::Opened::Plain(resp) if resp.status().is_success() => {
            let ping_every = link::seconds(resp.headers(), fleet::PING_EVERY_HEADER);
            (Source::Plain(resp.into_body()), ping_every)
        }
        link::Opened::Plain(resp) => return Err(StreamError::Status(resp.status())),
    };
    let read = read_stream(client, shared, &mut source, ping_every, answers, backoff).await;
    client.link.detach().await;
    read
}

/// Where the stream's lines come from: an upgraded connection, or a plain answer's body.
enum Source {
    Duplex(ReadHalf<link::Upgraded>),
    Plain(hyper::body::Incoming),
}

impl Source {
    /// Appends what arrived next to `buf`; false at the end of the stream.
    async fn read(&mut self, buf: &mut BytesMut) -> Result<bool, StreamError> {
        match self {
            Source::Duplex(io) => Ok(io.read_buf(buf).await.map_err(StreamError::Read)? > 0),
            Source::Plain(body) => loop {
                match body.frame().await {
                    None => return Ok(false),
                    Some(frame) => {
                        if let Ok(data) = frame?.into_data() {
                            buf.extend_from_slice(&data);
                            return Ok(true);
                        }
                    }
                }
            },
        }
    }
}

async fn read_stream(
    client: &CpClient,
    shared: &Shared,
    source: &mut Source,
    ping_every: Option<u64>,
    answers: &tokio::sync::watch::Sender<Option<Ack>>,
    backoff: &mut Duration,
) -> Result<(), StreamError> {
    // Silence for three of the pings the control plane says it sends means the stream is
    // dead, as when the replica's host is cut off: the proxy moves to another.
    let idle = fleet::idle_timeout(ping_every.unwrap_or(fleet::DEFAULT_PING_EVERY_S).min(MAX_PING_EVERY_S));
    let mut buf = BytesMut::new();
    loop {
        match tokio::time::timeout(idle, source.read(&mut buf)).await {
            Err(_) => return Err(StreamError::Idle(idle)),
            Ok(Ok(false)) => return Ok(()),
            Ok(result) => result?,
        };
        // The lines that arrived together are read in order and only the config they end with
        // is applied and answered: a proxy behind by a backlog of deltas (a fleet's churn, a
        // slow network) catches up with one swap and one ACK, not one of each per line.
        let mut latest: Option<ProxyConfig> = None;
        let mut read = false;
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line = buf.split_to(i + 1);
            if let Some(config) = read_line(shared, &client.link, latest.as_ref(), &line[..i])? {
                latest = Some(config);
            }
            read = true;
        }
        if let Some(config) = latest {
            answers.send_replace(Some(answer(shared, config)));
        }
        if read {
            *backoff = BACKOFF_MIN;
            client.targets.succeed();
        }
        if buf.len() > MAX_MESSAGE {
            return Err(StreamError::TooLarge);
        }
    }
}

/// The config a line makes, if any: a config, or a delta applied to the config before it
/// (`base`, else the one running). A delta made for another version ends the stream: the
/// proxy reconnects and is sent what it lacks.
fn read_line(
    shared: &Shared,
    link: &link::Link,
    base: Option<&ProxyConfig>,
    line: &[u8],
) -> Result<Option<ProxyConfig>, StreamError> {
    match serde_json::from_slice::<StreamMessage>(line) {
        Ok(StreamMessage::Ping) => Ok(None),
        Ok(
            answer @ (StreamMessage::Reported { .. } | StreamMessage::Deferred { .. } | StreamMessage::Refused { .. }),
        ) => {
            link.answered(&answer);
            Ok(None)
        }
        Ok(StreamMessage::Config(c)) => Ok(Some(c)),
        Ok(StreamMessage::Delta(d)) => {
            let running = shared.config.load();
            Ok(Some(base.unwrap_or(&running.config).apply(&d)?))
        }
        Err(e) => {
            tracing::warn!(error = %e, "unreadable message on the config stream");
            Ok(None)
        }
    }
}

/// Applies a config; its answer: ACK, or NACK with the reason it was refused.
fn answer(shared: &Shared, config: ProxyConfig) -> Ack {
    let version = config.version.clone();
    // Versions name their content: the same one again (after a reconnect, or from another
    // replica) changes nothing, and the config in force, with its metric handles and
    // budgets, stays.
    let error = if shared.config.load().version == version {
        tracing::debug!(%version, "config already applied");
        None
    } else {
        apply(shared, config)
    };
    Ack { proxy_id: shared.settings.proxy_id.clone(), version, error }
}

/// Posts the newest answer, then the newest since: a backlog of answers costs one request,
/// for the last. Ends when the proxy stops following, its last answer sent.
async fn send_answers(client: CpClient, mut newest: tokio::sync::watch::Receiver<Option<Ack>>) {
    // A value sent before the sender went is still seen: the channel's version is read first.
    while newest.changed().await.is_ok() {
        let ack = newest.borrow_and_update().clone();
        if let Some(ack) = ack
            && let Err(e) = send_ack(&client, &ack).await
        {
            tracing::warn!(error = %e, "could not acknowledge config");
        }
    }
}

/// Checks and swaps in a config; the reason when it is refused.
fn apply(shared: &Shared, config: ProxyConfig) -> Option<String> {
    let version = config.version.clone();
    match check(&config).and_then(|()| crate::applied::Applied::new(config)) {
        Ok(applied) => {
            let live: std::collections::HashSet<&str> =
                applied.endpoints.values().flatten().map(|e| e.addr.as_str()).collect();
            shared.endpoints.retain(&live);
            shared.config.store(Arc::new(applied));
            tracing::info!(%version, "applied config");
            None
        }
        Err(reason) => {
            tracing::warn!(%version, %reason, "refused config; keeping the previous one");
            Some(reason)
        }
    }
}

/// What the proxy can check before applying: every endpoint must be an address it can dial.
pub fn check(config: &ProxyConfig) -> Result<(), String> {
    if config.version.is_empty() {
        return Err("config has no version".into());
    }
    for (service, endpoints) in &config.endpoints {
        for e in endpoints {
            if e.addr.parse::<std::net::SocketAddr>().is_err() {
                return Err(format!("endpoint {:?} of {service} is not an address", e.addr));
            }
        }
    }
    Ok(())
}

/// On the stream when it is upgraded, else POSTed.
async fn send_ack(client: &CpClient, ack: &Ack) -> Result<(), StreamError> {
    if client.link.ack(ack).await {
        return Ok(());
    }
    let body = serde_json::to_vec(ack).unwrap_or_default();
    let resp = client.post(fleet::ACK, body).await.map_err(StreamError::Connect)?;
    if !resp.status().is_success() {
        return Err(StreamError::Status(resp.status()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_model::Endpoint;

    #[test]
    fn configs_with_undialable_endpoints_are_refused() {
        let mut c = ProxyConfig { version: "r.1".into(), ..Default::default() };
        assert!(check(&c).is_ok());
        c.endpoints.insert(
            "a".into(),
            vec![Endpoint { version: "v1".into(), addr: "nowhere".into(), proxy_id: "p".into(), identity: None }],
        );
        assert!(check(&c).unwrap_err().contains("nowhere"));
    }
}
