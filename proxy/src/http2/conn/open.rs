//! A client's side of a stream: opened with a request's head, then the response's head and
//! trailers as they come back. The caller waits on an [`Exchange`] the connection answers once:
//! with the response, or with why there is none.

use super::{Broken, CLIENT_STREAM_WINDOW, Res, Role, Sending, State, Stream, Waiter};
use crate::errors::BoxError;
use crate::http2::body::{self, Credit};
use crate::http2::frame::{self, Reason};
use crate::sync::Locked;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// The highest stream id a client may open (2^31 - 1).
const LAST_ID: u32 = (1 << 31) - 1;

/// A request for the connection to send.
pub struct Request {
    /// Its head, HPACK-encoded.
    pub head: Vec<u8>,
    /// Its body to send ([`Sending::Body`]), or [`Sending::Done`] when it has none.
    pub body: Sending,
    /// A HEAD request: its response's `content-length` describes no body.
    pub head_only: bool,
}

/// The response head a caller waits for, filled once by the connection. Not tokio's oneshot:
/// a caller that goes away must tell the connection which stream to cancel.
pub struct Exchange {
    credit: Arc<Credit>,
    slot: Mutex<Slot>,
}

#[derive(Default)]
struct Slot {
    /// The stream, once opened.
    id: Option<u32>,
    answer: Option<Result<http::Response<crate::Body>, Broken>>,
    /// The answer was given (and perhaps taken since).
    answered: bool,
    waker: Option<Waker>,
    /// The caller went away.
    gone: bool,
}

impl Exchange {
    /// Gives the caller its answer, unless it has one.
    fn answer(&self, answer: Result<http::Response<crate::Body>, Broken>) {
        let mut slot = self.slot.locked();
        if slot.answered {
            return;
        }
        slot.answered = true;
        slot.answer = Some(answer);
        if let Some(w) = slot.waker.take() {
            w.wake();
        }
    }
}

/// The connection's hold on an exchange: dropped unanswered (the connection ended with the
/// request still queued), it tells the caller so.
pub struct Answer(Arc<Exchange>);

impl Answer {
    pub(in crate::http2) fn fail(self, broken: Broken) {
        self.0.answer(Err(broken));
    }

    fn respond(self, resp: http::Response<crate::Body>) {
        self.0.answer(Ok(resp));
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        // Unanswered, the request never left the connection's queue.
        self.0.answer(Err(Broken::Refused));
    }
}

/// The caller's side: resolves to the response head, or why there is none. Dropped before
/// then, it cancels the stream.
pub struct Responding(Arc<Exchange>);

/// An exchange for a request on the connection whose readers leave notes in `credit`.
pub fn exchange(credit: Arc<Credit>) -> (Answer, Responding) {
    let exchange = Arc::new(Exchange { credit, slot: Mutex::default() });
    (Answer(exchange.clone()), Responding(exchange))
}

impl Future for Responding {
    type Output = Result<http::Response<crate::Body>, Broken>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.0.slot.locked();
        if let Some(answer) = slot.answer.take() {
            return Poll::Ready(answer);
        }
        if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            slot.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for Responding {
    fn drop(&mut self) {
        let mut slot = self.0.slot.locked();
        slot.gone = true;
        if !slot.answered
            && let Some(id) = slot.id
        {
            drop(slot);
            self.0.credit.dropped(id);
        }
    }
}

impl State {
    /// Whether this connection may open another stream now, and at all.
    pub fn can_open(&self) -> bool {
        self.streams.len() < self.peer_max_streams && self.open_at_all()
    }

    /// Whether it takes new streams at all: not once either end sent GOAWAY, or its ids ran out.
    pub fn open_at_all(&self) -> bool {
        self.goaway.is_none() && self.peer_goaway.is_none() && self.last_id < LAST_ID - 1
    }

    /// Opens a stream for `req`: its head now, its body as the windows allow.
    pub fn open(&mut self, req: Request, answer: Answer, cx: &mut Context<'_>) {
        debug_assert_eq!(self.role, Role::Client);
        let id = if self.last_id == 0 { 1 } else { self.last_id + 2 };
        {
            let mut slot = answer.0.slot.locked();
            if slot.gone {
                return;
            }
            slot.id = Some(id);
        }
        self.last_id = id;
        let end = matches!(req.body, Sending::Done);
        frame::headers(&mut self.out, id, &req.head, end, self.peer_frame);
        let stream = Stream {
            recv: Some(body::Shared::default()),
            expected: None,
            recv_window: i64::from(CLIENT_STREAM_WINDOW),
            credit: 0,
            send_window: self.peer_window,
            sending: req.body,
            waiter: Waiter::Caller(Some((answer, req.head_only))),
        };
        self.streams.insert(id, stream);
        if !end {
            self.pump(id, cx);
        }
    }

    /// A header block on a stream this client opened: the response's head (after any
    /// informational ones), or its trailers.
    pub(super) fn response_block(&mut self, id: u32, end_stream: bool, bytes: &[u8]) -> Res<()> {
        let waiting = match self.streams.get(&id) {
            Some(s) => matches!(s.waiter, Waiter::Caller(Some(_))),
            // Closed or reset here: decoded only to keep the table in step.
            None => return self.fields(bytes, false).map(drop),
        };
        let fields = self.fields(bytes, !waiting)?;
        if !waiting {
            return self.trailers(id, end_stream, fields);
        }
        let (parts, length) = match fields.response() {
            Ok(made) => made,
            Err(why) => {
                tracing::debug!(stream = id, why, "malformed HTTP/2 response");
                self.reset_for(id, Reason::PROTOCOL_ERROR, Broken::Other("a malformed response head"));
                return Ok(());
            }
        };
        if parts.status.is_informational() {
            // 100 Continue and the like: the final head is still to come, and must.
            if end_stream {
                self.reset_for(id, Reason::PROTOCOL_ERROR, Broken::Other("an informational head ended the stream"));
            }
            return Ok(());
        }
        let Some(s) = self.streams.get_mut(&id) else { return Ok(()) };
        let Waiter::Caller(pending) = &mut s.waiter else { return Ok(()) };
        let Some((answer, head_only)) = pending.take() else { return Ok(()) };
        let bodiless = head_only || matches!(parts.status.as_u16(), 204 | 304);
        s.expected = if bodiless { None } else { length };
        if end_stream && s.expected.is_some_and(|n| n > 0) {
            let short = Broken::Other("a response shorter than its content-length");
            answer.fail(short);
            self.reset_for(id, Reason::PROTOCOL_ERROR, short);
            return Ok(());
        }
        // A client's stream receives until its response ends: never None here.
        let Some(queue) = s.recv.clone() else { return Ok(()) };
        let body = body::Body::new(id, queue.clone(), self.credit.clone(), s.expected, true);
        if end_stream {
            body::end(&queue, None);
            self.received(id);
        }
        use http_body_util::BodyExt;
        answer.respond(http::Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync()));
        Ok(())
    }
}
