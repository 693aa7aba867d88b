//! A request body of unknown length (HTTP/2, gRPC, chunked) sent as it arrives, with a copy
//! kept of what went by, up to [`MAX_REPLAY_BODY`]: a retry replays the copy and then goes on
//! reading the original where the first attempt left it. Nothing waits for the whole body, so
//! a stream that needs an answer before it sends more (a bidirectional gRPC call) is never
//! held up; once the copy would grow past the limit it stops, and the body can no longer be
//! sent again.

use crate::{MAX_REPLAY_BODY, ReqBody};
use bytes::Bytes;
use http_body::{Body, Frame};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

/// One reading of the body: the first attempt's, or a replay's.
pub struct Tee {
    state: Arc<Mutex<State>>,
    /// How many of the kept chunks this reading has given out.
    at: usize,
    /// This reading has given out the end (and the trailers, if any).
    ended: bool,
}

struct State {
    original: ReqBody,
    kept: Vec<Bytes>,
    size: usize,
    /// The copy is incomplete (too large, or the original broke): no replay.
    spoiled: bool,
    /// The original has ended, with these trailers.
    done: Option<Option<http::HeaderMap>>,
}

impl Tee {
    pub fn new(original: ReqBody) -> Self {
        let state = State { original, kept: Vec::new(), size: 0, spoiled: false, done: None };
        Tee { state: Arc::new(Mutex::new(state)), at: 0, ended: false }
    }

    /// Another reading from the start, when the copy holds all that was read.
    pub fn replay(&self) -> Option<Tee> {
        (!self.spoiled()).then(|| Tee { state: self.state.clone(), at: 0, ended: false })
    }

    /// The copy no longer holds all that was read: no replay.
    pub fn spoiled(&self) -> bool {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).spoiled
    }
}

impl Body for Tee {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let mut guard = this.state.lock().unwrap_or_else(|e| e.into_inner());
        let state = &mut *guard;
        if let Some(chunk) = state.kept.get(this.at) {
            this.at += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk.clone()))));
        }
        if let Some(trailers) = &state.done {
            this.ended = true;
            return Poll::Ready(trailers.clone().map(|t| Ok(Frame::trailers(t))));
        }
        let frame = ready!(Pin::new(&mut state.original).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => match f.data_ref() {
                Some(data) if !state.spoiled && state.size + data.len() <= MAX_REPLAY_BODY => {
                    state.kept.push(data.clone());
                    state.size += data.len();
                    this.at += 1;
                }
                Some(_) => state.spoiled = true,
                None => {
                    state.done = Some(f.trailers_ref().cloned());
                    this.ended = true;
                }
            },
            Some(Err(_)) => state.spoiled = true,
            None => {
                state.done = Some(None);
                this.ended = true;
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn original(chunks: &[&'static [u8]], trailers: bool) -> ReqBody {
        let mut frames: Vec<Result<Frame<Bytes>, hyper::Error>> =
            chunks.iter().map(|c| Ok(Frame::data(Bytes::from_static(c)))).collect();
        if trailers {
            let mut t = http::HeaderMap::new();
            t.insert("x-done", http::HeaderValue::from_static("1"));
            frames.push(Ok(Frame::trailers(t)));
        }
        StreamBody::new(futures::stream::iter(frames)).boxed_unsync()
    }

    async fn read(mut body: Tee, frames: usize) -> (Vec<u8>, bool) {
        let (mut data, mut trailers) = (Vec::new(), false);
        for _ in 0..frames {
            match body.frame().await {
                Some(Ok(f)) if f.is_data() => data.extend_from_slice(&f.into_data().unwrap()),
                Some(Ok(_)) => trailers = true,
                _ => break,
            }
        }
        (data, trailers)
    }

    #[tokio::test]
    async fn a_replay_gives_what_the_first_reading_gave_then_the_rest_of_the_original() {
        let first = Tee::new(original(&[b"ab", b"cd", b"ef"], true));
        let again = first.replay().unwrap();
        // The first attempt read two chunks and was given up.
        assert_eq!(read(first, 2).await, (b"abcd".to_vec(), false));
        // The replay gives them from the copy, then reads on: the whole body, trailers and all.
        assert_eq!(read(again.replay().unwrap(), 10).await, (b"abcdef".to_vec(), true));
        assert_eq!(read(again, 10).await, (b"abcdef".to_vec(), true), "and once more");
    }

    #[tokio::test]
    async fn a_body_larger_than_the_limit_is_sent_once() {
        let big: &'static [u8] = Box::leak(vec![b'x'; MAX_REPLAY_BODY].into_boxed_slice());
        let first = Tee::new(original(&[b"a", big], false));
        let (data, _) = read(first.replay().unwrap(), 10).await;
        assert_eq!(data.len(), MAX_REPLAY_BODY + 1, "sent whole");
        assert!(first.replay().is_none(), "the copy could not hold it: no retry");
    }
}
