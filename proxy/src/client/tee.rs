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
    /// Readings are numbered in the order they were made.
    id: usize,
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
    /// The newest reading that read from the original: an older one (an attempt given up,
    /// whose sender may still poll) reads no more of it, so that it never takes the original
    /// from the retry, nor its wake-up.
    reader: usize,
    readings: usize,
}

impl Tee {
    pub fn new(original: ReqBody) -> Self {
        let state = State { original, kept: Vec::new(), size: 0, spoiled: false, done: None, reader: 0, readings: 1 };
        Tee { state: Arc::new(Mutex::new(state)), id: 0, at: 0, ended: false }
    }

    /// Another reading from the start, when the copy holds all that was read.
    pub fn replay(&self) -> Option<Tee> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.spoiled {
            return None;
        }
        state.readings += 1;
        Some(Tee { state: self.state.clone(), id: state.readings - 1, at: 0, ended: false })
    }

    /// The copy no longer holds all that was read: no replay.
    pub fn spoiled(&self) -> bool {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).spoiled
    }
}

impl Body for Tee {
    type Data = Bytes;
    type Error = crate::errors::BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, crate::errors::BodyError>>> {
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
        if this.id < state.reader {
            return Poll::Pending; // given up: a newer reading has the original
        }
        state.reader = this.id;
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

    /// Also true once everything kept was read and the original is at its end: the last data
    /// frame then carries END_STREAM. Otherwise an empty DATA frame follows each body, which
    /// an h2 server counts against its small-frame budget (h2 0.4.20): tonic's closed a busy
    /// connection with ENHANCE_YOUR_CALM under streamed calls.
    fn is_end_stream(&self) -> bool {
        if self.ended {
            return true;
        }
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let all_read = self.at >= state.kept.len();
        all_read && (matches!(state.done, Some(None)) || (state.reader == self.id && state.original.is_end_stream()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn original(chunks: &[&'static [u8]], trailers: bool) -> ReqBody {
        let mut frames: Vec<Result<Frame<Bytes>, crate::errors::BodyError>> =
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
    async fn a_reading_given_up_reads_no_more_of_the_original_once_a_replay_has() {
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Frame<Bytes>, crate::errors::BodyError>>();
        let mut first = Tee::new(StreamBody::new(rx).boxed_unsync());
        tx.unbounded_send(Ok(Frame::data(Bytes::from_static(b"ab")))).unwrap();
        assert_eq!(first.frame().await.unwrap().unwrap().into_data().unwrap(), "ab");
        let mut replay = first.replay().unwrap();
        assert_eq!(replay.frame().await.unwrap().unwrap().into_data().unwrap(), "ab", "from the copy");
        tx.unbounded_send(Ok(Frame::data(Bytes::from_static(b"cd")))).unwrap();
        assert_eq!(replay.frame().await.unwrap().unwrap().into_data().unwrap(), "cd", "from the original");
        tx.unbounded_send(Ok(Frame::data(Bytes::from_static(b"ef")))).unwrap();
        assert_eq!(first.frame().await.unwrap().unwrap().into_data().unwrap(), "cd", "the copy is anyone's");
        let stale = futures::poll!(first.frame());
        assert!(stale.is_pending(), "the first reading was given up: the original is the replay's");
        assert_eq!(replay.frame().await.unwrap().unwrap().into_data().unwrap(), "ef", "nothing taken from the retry");
    }

    #[tokio::test]
    async fn the_end_shows_with_the_last_frame() {
        // An original that knows its end, as an HTTP/2 request's does once END_STREAM came.
        let known = || http_body_util::Full::new(Bytes::from_static(b"abcd")).map_err(|n| match n {}).boxed_unsync();
        let mut first = Tee::new(known());
        let mut again = first.replay().unwrap();
        assert!(!first.is_end_stream());
        assert_eq!(first.frame().await.unwrap().unwrap().into_data().unwrap(), "abcd");
        assert!(first.is_end_stream(), "nothing more in the original: no empty frame to follow");
        assert!(!again.is_end_stream(), "a replay has the copy still to give");
        assert_eq!(again.frame().await.unwrap().unwrap().into_data().unwrap(), "abcd");
        // An original that does not know (a stream), or has trailers to come, is not at its end.
        let mut unknown = Tee::new(original(&[b"ab"], true));
        assert_eq!(unknown.frame().await.unwrap().unwrap().into_data().unwrap(), "ab");
        assert!(!unknown.is_end_stream(), "the trailers are still to come");
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
