//! The duplex config stream: after `101 Switching Protocols` (`Upgrade: trellis-fleet/1`), one
//! connection carries the config stream's lines to the proxy and its ACKs and reports back,
//! newline-delimited JSON both ways. It exists for the fleet's memory: an HTTP/2 connection
//! holds some 29 KB of buffers and tables for as long as it is open, whereas this one holds
//! only TLS state and the line being read.

use super::{ApiError, take_report};
use crate::fleet::slice;
use crate::state::AppState;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trellis_model::fleet::{ProxyMessage, StreamMessage};

pub(super) type Lines = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, std::convert::Infallible>> + Send>>;

/// A line longer than this ends the stream: reports are far smaller (HTTP's body limit
/// applies to the same report sent by `POST`).
const MAX_LINE: usize = 2 << 20;
/// Room made for a read while the stream idles: a report (a few hundred bytes) takes a few
/// reads (out of what TLS already decrypted), and an idle stream holds only this.
const READ_AT_ONCE: usize = 128;
/// A proxy that takes nothing of what it is sent for this long is gone (a config of a large
/// mesh is a few hundred KB).
const WRITE_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Who a stream was opened by: the proxy, and the service it registered as.
pub(super) struct Opener {
    pub proxy_id: String,
    pub service: String,
    /// Whether a line of the stream already named another proxy: audited once per stream, so
    /// that a proxy cannot fill the audit log one line at a time.
    denied: bool,
}

impl Opener {
    pub fn new(proxy_id: String, service: String) -> Self {
        Opener { proxy_id, service, denied: false }
    }
}

/// Serves proxy `who`'s upgraded connection: the config stream's `lines` out, its ACKs and
/// reports in, each report answered in order. Ends when either side closes, at a line it
/// cannot take, or when `lines` ends (shutdown, or the proxy no longer served by this stream).
/// `lines` comes boxed: an async fn's arguments stay in its future beside what it moves them
/// to, and that future is held for every connected proxy.
pub(super) async fn serve(upgrade: hyper::upgrade::OnUpgrade, mut lines: Lines, state: AppState, mut who: Opener) {
    let proxy_id = who.proxy_id.clone();
    let mut io = match upgrade.await {
        Ok(upgraded) => hyper_util::rt::TokioIo::new(upgraded),
        Err(e) => return tracing::debug!(%proxy_id, error = %e, "duplex stream: the upgrade failed"),
    };
    let mut partial = Vec::new();
    loop {
        partial.reserve(READ_AT_ONCE);
        // Both futures are cancel-safe: the stream keeps its place, and a read that did not
        // finish took nothing.
        let out = tokio::select! {
            line = lines.next() => match line {
                Some(Ok(line)) => vec![line],
                _ => break,
            },
            read = io.read_buf(&mut partial) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) => answer_lines(&state, &mut who, &mut partial),
            },
        };
        if partial.len() > MAX_LINE {
            let error = format!("a line longer than {MAX_LINE} bytes");
            let refused = StreamMessage::Refused { of: "line".into(), status: 413, error };
            write(&mut io, &[slice::line(&refused)]).await;
            break;
        }
        if !out.is_empty() && !write(&mut io, &out).await {
            return;
        }
        // An idle stream keeps no more than a read's room.
        if partial.is_empty() && partial.capacity() > READ_AT_ONCE {
            partial = Vec::new();
        }
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), io.shutdown()).await;
}

/// Writes `lines`; false when the connection broke, or the proxy took none of it for
/// [`WRITE_WITHIN`] (its stream is then closed, as a hung one).
async fn write(io: &mut (impl AsyncWriteExt + Unpin), lines: &[Bytes]) -> bool {
    let written = async {
        for line in lines {
            io.write_all(line).await?;
        }
        io.flush().await
    };
    matches!(tokio::time::timeout(WRITE_WITHIN, written).await, Ok(Ok(())))
}

/// Takes the whole lines at the front of `partial` (leaving a line still arriving), with the
/// answer to each that has one.
fn answer_lines(state: &AppState, who: &mut Opener, partial: &mut Vec<u8>) -> Vec<Bytes> {
    let mut answers = Vec::new();
    let mut start = 0;
    while let Some(n) = partial[start..].iter().position(|b| *b == b'\n') {
        let line = &partial[start..start + n];
        start += n + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Some(answer) = answer(state, who, line) {
            answers.push(slice::line(&answer));
        }
    }
    partial.drain(..start);
    answers
}

/// What a proxy's line is answered with: a report always, an ACK only when refused.
fn answer(state: &AppState, who: &mut Opener, line: &[u8]) -> Option<StreamMessage> {
    let proxy_id = who.proxy_id.as_str();
    let refused = |of: &str, e: ApiError| {
        let (status, error) = e.status_and_message();
        Some(StreamMessage::Refused { of: of.into(), status: status.as_u16(), error })
    };
    let message = match serde_json::from_slice::<ProxyMessage>(line) {
        Ok(message) => message,
        Err(e) => return refused("line", ApiError::invalid("unreadable line", e.to_string())),
    };
    let (of, claimed) = match &message {
        ProxyMessage::Ack(ack) => ("ack", &ack.proxy_id),
        ProxyMessage::Report(report) => ("report", &report.proxy_id),
    };
    if claimed != proxy_id {
        if !std::mem::replace(&mut who.denied, true) {
            let summary =
                format!("the stream of proxy {proxy_id} ({}) tried to speak for proxy {claimed}", who.service);
            let detail = serde_json::json!({ "proxy_id": proxy_id, "claimed_proxy_id": claimed, "line": of });
            state.audit.system("identity.denied", Some(&who.service), summary, detail);
        }
        let e = ApiError::Forbidden(format!("the stream of proxy {proxy_id} may not speak for {claimed}"));
        return refused(of, e);
    }
    match message {
        ProxyMessage::Ack(ack) => state.fleet.ack(&ack).err().and_then(|e| refused(of, e.into())),
        ProxyMessage::Report(report) => {
            let Some(_in_hand) = state.telemetry.admit() else {
                state.fleet.heartbeat(proxy_id);
                return Some(StreamMessage::Deferred { retry_after: crate::telemetry::RETRY_AFTER_S });
            };
            match take_report(state, &report) {
                Ok(report_every) => Some(StreamMessage::Reported { report_every }),
                Err(e) => refused(of, e),
            }
        }
    }
}
