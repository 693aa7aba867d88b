//! A body as it arrives on a stream (a server's request, a client's response): the connection
//! queues its DATA and trailers, the reader takes them, and what it took is handed back to the
//! connection as window to give the peer again.

use crate::errors::BodyError;
use crate::sync::Locked;
use bytes::Bytes;
use http::HeaderMap;
use http_body::{Frame, SizeHint};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// What a stream received and its reader has not taken yet.
#[derive(Default)]
pub struct Queue {
    chunks: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    ended: bool,
    /// Why the stream broke (the peer reset it, the connection closed).
    broken: Option<&'static str>,
    reader: Option<Waker>,
}

/// What the readers leave for the connection's task, which `connection` wakes.
#[derive(Default)]
pub struct Credit {
    pub notes: Mutex<Notes>,
    pub connection: futures::task::AtomicWaker,
}

#[derive(Default)]
pub struct Notes {
    /// Bytes the readers took, by stream, to give back as window.
    pub taken: Vec<(u32, usize)>,
    /// Streams whose reader let go before their end: a client's, to cancel.
    pub dropped: Vec<u32>,
}

impl Credit {
    fn note(&self, write: impl FnOnce(&mut Notes)) {
        write(&mut self.notes.locked());
        self.connection.wake();
    }

    /// Stream `id`'s reader let go of it before its end.
    pub fn dropped(&self, id: u32) {
        self.note(|n| n.dropped.push(id));
    }
}

pub type Shared = Arc<Mutex<Queue>>;

/// The connection's side.
pub fn push(q: &Shared, data: Bytes) {
    let mut q = q.locked();
    q.chunks.push_back(data);
    if let Some(w) = q.reader.take() {
        w.wake();
    }
}

pub fn end(q: &Shared, trailers: Option<HeaderMap>) {
    let mut q = q.locked();
    q.ended = true;
    q.trailers = trailers;
    if let Some(w) = q.reader.take() {
        w.wake();
    }
}

pub fn break_off(q: &Shared, why: &'static str) {
    let mut q = q.locked();
    if !q.ended {
        q.broken = Some(why);
    }
    if let Some(w) = q.reader.take() {
        w.wake();
    }
}

/// The reader's side: the body.
pub struct Body {
    id: u32,
    queue: Shared,
    credit: Arc<Credit>,
    /// From `content-length`, for the size hint.
    length: Option<u64>,
    /// Whether letting go of the body before its end cancels the stream: a client's response,
    /// whose upstream would otherwise go on sending what nobody reads. A server's service may
    /// drop a request's body and still answer.
    cancel_on_drop: bool,
}

impl Body {
    pub fn new(id: u32, queue: Shared, credit: Arc<Credit>, length: Option<u64>, cancel_on_drop: bool) -> Body {
        Body { id, queue, credit, length, cancel_on_drop }
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        if self.cancel_on_drop && !self.queue.locked().ended {
            self.credit.dropped(self.id);
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let mut q = this.queue.locked();
        if let Some(first) = q.chunks.pop_front() {
            // Join what else has arrived: fewer, larger pieces for whoever sends them on.
            let data = match q.chunks.is_empty() {
                true => first,
                false => {
                    let mut joined = bytes::BytesMut::from(&first[..]);
                    while let Some(more) = q.chunks.pop_front() {
                        joined.extend_from_slice(&more);
                    }
                    joined.freeze()
                }
            };
            drop(q);
            this.credit.note(|n| n.taken.push((this.id, data.len())));
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some(why) = q.broken {
            return Poll::Ready(Some(Err(BodyError::from(crate::errors::BoxError::from(why)))));
        }
        if q.ended {
            return Poll::Ready(q.trailers.take().map(|t| Ok(Frame::trailers(t))));
        }
        q.reader = Some(cx.waker().clone());
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        let q = self.queue.locked();
        q.ended && q.chunks.is_empty() && q.trailers.is_none() && q.broken.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
