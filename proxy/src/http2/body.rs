//! A request body as it arrives on a stream: the connection queues its DATA and trailers, the
//! service reads them, and what it read is handed back to the connection as window to give
//! the client again.

use crate::errors::BodyError;
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
    /// Why the stream broke (the client reset it, the connection closed).
    broken: Option<&'static str>,
    reader: Option<Waker>,
}

/// Bytes the readers took, by stream, for the connection to give back as window.
#[derive(Default)]
pub struct Credit {
    pub taken: Mutex<Vec<(u32, usize)>>,
    pub connection: futures::task::AtomicWaker,
}

pub type Shared = Arc<Mutex<Queue>>;

fn locked(q: &Shared) -> std::sync::MutexGuard<'_, Queue> {
    q.lock().unwrap_or_else(|e| e.into_inner())
}

/// The connection's side.
pub fn push(q: &Shared, data: Bytes) {
    let mut q = locked(q);
    q.chunks.push_back(data);
    if let Some(w) = q.reader.take() {
        w.wake();
    }
}

pub fn end(q: &Shared, trailers: Option<HeaderMap>) {
    let mut q = locked(q);
    q.ended = true;
    q.trailers = trailers;
    if let Some(w) = q.reader.take() {
        w.wake();
    }
}

pub fn break_off(q: &Shared, why: &'static str) {
    let mut q = locked(q);
    if !q.ended {
        q.broken = Some(why);
    }
    if let Some(w) = q.reader.take() {
        w.wake();
    }
}

/// The reader's side: the request's body.
pub struct Body {
    pub id: u32,
    pub queue: Shared,
    pub credit: Arc<Credit>,
    /// From `content-length`, for the size hint.
    pub length: Option<u64>,
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let mut q = locked(&this.queue);
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
            let mut taken = this.credit.taken.lock().unwrap_or_else(|e| e.into_inner());
            taken.push((this.id, data.len()));
            drop(taken);
            this.credit.connection.wake();
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
        let q = locked(&self.queue);
        q.ended && q.chunks.is_empty() && q.trailers.is_none() && q.broken.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
