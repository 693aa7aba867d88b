//! The send side of a connection: a server's response heads, then each body being sent (a
//! response's, a request's) as the peer's windows allow, then its trailers.

use super::{Broken, Reason, Role, Sending, State};
use crate::http2::{body, frame, hpack, response};
use http_body::Body as _;
use std::task::{Context, Poll};

impl State {
    /// The service's answer to a stream: its head now, its body as the windows allow.
    pub fn respond(&mut self, id: u32, resp: http::Response<crate::Body>, cx: &mut Context<'_>) {
        let Some(stream) = self.streams.get_mut(&id) else { return };
        let mut resp = resp;
        crate::transport::h1::into_header_map(&mut resp);
        let (head, body) = resp.into_parts();
        let end = body.is_end_stream();
        let mut block = Vec::with_capacity(128);
        response::encode(&head, &body, &mut block);
        frame::headers(&mut self.out, id, &block, end, self.peer_frame);
        if end {
            self.finish(id);
            return;
        }
        stream.sending = Sending::Body(body, None);
        self.pump(id, cx);
    }

    /// Sends what a stream's body has ready, as far as the windows allow.
    pub fn pump(&mut self, id: u32, cx: &mut Context<'_>) {
        loop {
            let Some(stream) = self.streams.get_mut(&id) else { return };
            let Sending::Body(body, pending) = &mut stream.sending else { return };
            if let Some(data) = pending {
                let room = self.send_window.min(stream.send_window).min(self.peer_frame as i64).max(0) as usize;
                if room == 0 && !data.is_empty() {
                    return;
                }
                let chunk = data.split_to(room.min(data.len()));
                let last = data.is_empty() && body.is_end_stream();
                if chunk.is_empty() && !last {
                    // An empty piece of the body: nothing to send for it.
                    *pending = None;
                    continue;
                }
                let n = chunk.len();
                frame::head(&mut self.out, n, frame::DATA, if last { frame::END_STREAM } else { 0 }, id);
                self.out.extend_from_slice(&chunk);
                self.send_window -= n as i64;
                stream.send_window -= n as i64;
                if data.is_empty() {
                    *pending = None;
                }
                if last {
                    self.finish(id);
                    return;
                }
                continue;
            }
            match std::pin::Pin::new(&mut *body).poll_frame(cx) {
                Poll::Pending => return,
                Poll::Ready(None) => {
                    frame::head(&mut self.out, 0, frame::DATA, frame::END_STREAM, id);
                    self.finish(id);
                    return;
                }
                Poll::Ready(Some(Ok(f))) => match f.into_data() {
                    Ok(data) => *pending = Some(data),
                    Err(f) => {
                        let trailers = f.into_trailers().unwrap_or_default();
                        let mut block = Vec::with_capacity(64);
                        for (name, value) in &trailers {
                            hpack::header(name, value, &mut block);
                        }
                        frame::headers(&mut self.out, id, &block, true, self.peer_frame);
                        self.finish(id);
                        return;
                    }
                },
                Poll::Ready(Some(Err(e))) => {
                    tracing::debug!(stream = id, error = %e, "the body being sent failed");
                    let reason = match self.role {
                        Role::Server => Reason::INTERNAL_ERROR,
                        Role::Client => Reason::CANCEL,
                    };
                    self.reset_for(id, reason, Broken::Body);
                    return;
                }
            }
        }
    }

    /// This end's side of stream `id` is sent. A server's response ends the stream, and cuts
    /// off a request body still coming (RFC 9113 §8.1: RST_STREAM with NO_ERROR). A client's
    /// request waits for its response, unless that has ended already.
    pub(super) fn finish(&mut self, id: u32) {
        if self.role == Role::Client
            && let Some(stream) = self.streams.get_mut(&id)
            && stream.recv.is_some()
        {
            stream.sending = Sending::Done;
            return;
        }
        let Some(stream) = self.streams.remove(&id) else { return };
        if let Some(queue) = stream.recv {
            frame::rst_stream(&mut self.out, id, Reason::NO_ERROR);
            body::break_off(&queue, "the response ended before the request");
        }
    }

    /// Streams whose body waits to be sent: pumped again on each poll.
    pub fn pump_all(&mut self, cx: &mut Context<'_>) {
        // Empty (and so not allocated) while no stream has a body to send.
        let sending: Vec<u32> =
            self.streams.iter().filter(|(_, s)| matches!(s.sending, Sending::Body(..))).map(|(&id, _)| id).collect();
        for id in sending {
            self.pump(id, cx);
        }
    }
}
