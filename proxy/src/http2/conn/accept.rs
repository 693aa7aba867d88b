//! A server's side of a stream's opening: a client's header block is a new request for the
//! service, or the trailers of one.

use super::{Event, Res, Role, STREAM_WINDOW, Sending, State, Stream, Waiter};
use crate::http2::body;
use crate::http2::frame::Reason;

impl State {
    pub(super) fn request_block(
        &mut self,
        id: u32,
        end_stream: bool,
        bytes: &[u8],
        events: &mut Vec<Event>,
    ) -> Res<()> {
        debug_assert_eq!(self.role, Role::Server);
        let trailers = id <= self.last_id;
        let fields = self.fields(bytes, trailers)?;
        if trailers {
            return self.trailers(id, end_stream, fields);
        }
        self.last_id = id;
        if self.goaway.is_some_and(|last| id > last) {
            return Ok(());
        }
        if self.streams.len() >= super::MAX_STREAMS as usize {
            return self.refuse(id, Reason::REFUSED_STREAM);
        }
        let too_large = fields.size > crate::transport::h1::MAX_HEAD;
        let (mut parts, length) = match fields.request() {
            Ok(made) => made,
            Err(why) => {
                tracing::debug!(stream = id, why, "malformed HTTP/2 request");
                return self.refuse(id, Reason::PROTOCOL_ERROR);
            }
        };
        let end = end_stream;
        if end && length.is_some_and(|n| n > 0) {
            return self.refuse(id, Reason::PROTOCOL_ERROR);
        }
        let queue = body::Shared::default();
        if end {
            body::end(&queue, None);
        }
        let (abort, registration) = futures::future::AbortHandle::new_pair();
        let stream = Stream {
            recv: (!end).then(|| queue.clone()),
            expected: length,
            recv_window: i64::from(STREAM_WINDOW),
            credit: 0,
            send_window: self.peer_window,
            sending: Sending::Waiting,
            waiter: Waiter::Service(abort),
        };
        self.streams.insert(id, stream);
        // What the proxy's HTTP/1.1 server checks as it reads a head, and its answers.
        let checked = match too_large {
            true => Err(crate::transport::h1::Refused::HEADERS_TOO_LARGE),
            false => crate::transport::h1::check_parsed(&mut parts),
        };
        if let Err(refused) = checked {
            events.push(Event::Refused(id, crate::transport::h1::refusal(refused, http::Version::HTTP_2)));
            return Ok(());
        }
        let body = body::Body::new(id, queue, self.credit.clone(), length, false);
        use http_body_util::BodyExt;
        let req = http::Request::from_parts(parts, body.boxed_unsync());
        events.push(Event::Request(id, req, registration));
        Ok(())
    }
}
