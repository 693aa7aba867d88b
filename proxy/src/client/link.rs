//! The duplex config stream (`Upgrade: trellis-fleet/1`): one HTTP/1.1 connection, upgraded,
//! that carries the config stream's lines to the proxy and its ACKs and reports back. A
//! control plane that does not offer it answers the same request with the plain stream, and
//! the proxy then POSTs its ACKs and reports beside it.

use bytes::Bytes;
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use trellis_model::fleet::{self, ProxyMessage, StreamMessage};

pub type Upgraded = TokioIo<hyper::upgrade::Upgraded>;

/// The seconds in header `name` (`x-trellis-ping-every`, `x-trellis-report-every`,
/// `Retry-After`), when it holds a number.
pub fn seconds(headers: &http::HeaderMap, name: &str) -> Option<u64> {
    headers.get(name).and_then(|v| v.to_str().ok()?.trim().parse().ok())
}

/// How the config stream came back.
pub enum Opened {
    /// Upgraded: lines both ways, and the seconds between the control plane's pings.
    Duplex(Upgraded, Option<u64>),
    /// A control plane without the duplex stream: the lines come in this answer's body.
    Plain(http::Response<hyper::body::Incoming>),
}

/// Sends the stream's `request` on a connection of its own (`io`), asking for the upgrade.
pub async fn open<IO>(io: IO, mut request: http::Request<http_body_util::Full<Bytes>>) -> Result<Opened, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let headers = request.headers_mut();
    headers.insert(http::header::UPGRADE, http::HeaderValue::from_static(fleet::UPGRADE));
    headers.insert(http::header::CONNECTION, http::HeaderValue::from_static("upgrade"));
    let (mut send, connection) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
    // Ends when the connection is handed over (upgraded) or closes.
    tokio::spawn(connection.with_upgrades());
    let resp = send.send_request(request).await.map_err(|e| trellis_host::with_causes(&e))?;
    if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return Ok(Opened::Plain(resp));
    }
    let ping_every = seconds(resp.headers(), fleet::PING_EVERY_HEADER);
    let upgraded = hyper::upgrade::on(resp).await.map_err(|e| format!("the upgrade failed: {e}"))?;
    Ok(Opened::Duplex(TokioIo::new(upgraded), ping_every))
}

/// What became of a report.
#[derive(Debug, PartialEq, Eq)]
pub enum Reported {
    /// Taken: send the next in this many seconds (when the control plane said).
    Taken(Option<u64>),
    /// Not read, intake is behind: send its counts with the next, in this many seconds.
    Deferred(Option<u64>),
    /// Refused: the status and why.
    Refused(u16, String),
}

/// The duplex stream's sending side while one is open; ACKs and reports go over HTTP
/// otherwise. Reports are answered in the order they were written.
#[derive(Default)]
pub struct Link {
    write: tokio::sync::Mutex<Option<WriteHalf<Upgraded>>>,
    waiting: Mutex<VecDeque<tokio::sync::oneshot::Sender<Reported>>>,
}

/// How long a line may take to go out, and a report to be answered, as a POST waits for its
/// answer's head.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

impl Link {
    /// Takes `io` for the proxy's lines; its reading half is the caller's. Reports still
    /// waiting on an earlier stream will not be answered.
    pub async fn attach(&self, io: Upgraded) -> ReadHalf<Upgraded> {
        let (read, write) = tokio::io::split(io);
        let mut slot = self.write.lock().await;
        self.lock_waiting().clear();
        *slot = Some(write);
        read
    }

    /// The stream ended: ACKs and reports go over HTTP again, and reports waiting on it are
    /// answered by nobody (their counts go with the next).
    pub async fn detach(&self) {
        let mut slot = self.write.lock().await;
        *slot = None;
        self.lock_waiting().clear();
    }

    /// Writes an ACK on the stream; false when none is open (or it broke).
    pub async fn ack(&self, ack: &fleet::Ack) -> bool {
        self.send(&ProxyMessage::Ack(ack.clone()), None).await
    }

    /// Writes a report on the stream and waits for its answer; `None` when no stream is open,
    /// `Some(Err)` when it broke or the answer did not come.
    pub async fn report(&self, report: trellis_model::telemetry::Report) -> Option<Result<Reported, String>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if !self.send(&ProxyMessage::Report(report), Some(tx)).await {
            return None;
        }
        Some(match tokio::time::timeout(ANSWER_WITHIN, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err("the stream ended before the report was answered".into()),
            Err(_) => Err(format!("no answer to the report within {} s", ANSWER_WITHIN.as_secs())),
        })
    }

    /// Hands the control plane's answer on to the oldest report written.
    pub fn answered(&self, message: &StreamMessage) {
        let answer = match message {
            StreamMessage::Reported { report_every } => Reported::Taken(Some(*report_every)),
            StreamMessage::Deferred { retry_after } => Reported::Deferred(Some(*retry_after)),
            StreamMessage::Refused { of, status, error } if of == "report" => Reported::Refused(*status, error.clone()),
            StreamMessage::Refused { of, status, error } => {
                return tracing::warn!(%of, %status, %error, "the control plane refused a line of the stream");
            }
            _ => return,
        };
        if let Some(waiting) = self.lock_waiting().pop_front() {
            let _ = waiting.send(answer);
        }
    }

    async fn send(&self, message: &ProxyMessage, answer: Option<tokio::sync::oneshot::Sender<Reported>>) -> bool {
        let line = fleet::line(message);
        let mut slot = self.write.lock().await;
        let Some(write) = slot.as_mut() else { return false };
        // Queued under the writing lock, so answers are matched in the order lines went out.
        if let Some(answer) = answer {
            self.lock_waiting().push_back(answer);
        }
        let written = async {
            write.write_all(&line).await?;
            write.flush().await
        };
        if let Ok(Ok(())) = tokio::time::timeout(ANSWER_WITHIN, written).await {
            return true;
        }
        // Broken, or the control plane takes nothing: the reading side notices too (or times
        // out on silence) and ends the stream.
        *slot = None;
        false
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, VecDeque<tokio::sync::oneshot::Sender<Reported>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}
