//! What keeps a connection and its streams going, beside their heads and bodies: SETTINGS,
//! WINDOW_UPDATE and the window given back, PING, RST_STREAM, GOAWAY; resets, floods, and the
//! connection's end.

use super::{Broken, CREDIT_STEP, Fault, MAX_EMPTY_PER_SECOND, MAX_RESETS_PER_SECOND, Res, Role, State, fault};
use crate::http2::frame::{self, Head, Reason};
use crate::sync::Locked;

impl State {
    /// Counts one flood event of a kind; too many in a second end the connection.
    pub(super) fn flood(&mut self, resets: bool) -> Res<()> {
        let now = crate::clock::now();
        if now.duration_since(self.second) >= std::time::Duration::from_secs(1) {
            (self.second, self.resets, self.empties) = (now, 0, 0);
        }
        let (count, limit) = match resets {
            true => (&mut self.resets, MAX_RESETS_PER_SECOND),
            false => (&mut self.empties, MAX_EMPTY_PER_SECOND),
        };
        *count += 1;
        match *count > limit {
            true => fault(Reason::ENHANCE_YOUR_CALM, "too many resets or empty frames"),
            false => Ok(()),
        }
    }

    pub(super) fn settings(&mut self, head: Head, payload: &[u8]) -> Res<()> {
        if head.stream != 0 {
            return fault(Reason::PROTOCOL_ERROR, "SETTINGS on a stream");
        }
        if head.flags & frame::ACK != 0 {
            return match head.len {
                0 => Ok(()),
                _ => fault(Reason::FRAME_SIZE_ERROR, "a SETTINGS ACK with a payload"),
            };
        }
        if !head.len.is_multiple_of(6) {
            return fault(Reason::FRAME_SIZE_ERROR, "SETTINGS not a multiple of 6 bytes");
        }
        for setting in payload.chunks(6) {
            let id = u16::from_be_bytes([setting[0], setting[1]]);
            let value = frame::be32(&setting[2..]);
            match id {
                frame::ENABLE_PUSH if value > 1 => return fault(Reason::PROTOCOL_ERROR, "ENABLE_PUSH not 0 or 1"),
                frame::ENABLE_PUSH if value == 1 && self.role == Role::Client => {
                    return fault(Reason::PROTOCOL_ERROR, "ENABLE_PUSH from a server");
                }
                frame::MAX_CONCURRENT_STREAMS => self.peer_max_streams = value as usize,
                frame::INITIAL_WINDOW_SIZE => {
                    let value = i64::from(value);
                    if value > frame::MAX_WINDOW {
                        return fault(Reason::FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE too large");
                    }
                    let delta = value - self.peer_window;
                    self.peer_window = value;
                    for s in self.streams.values_mut() {
                        s.send_window += delta;
                        if s.send_window > frame::MAX_WINDOW {
                            return fault(Reason::FLOW_CONTROL_ERROR, "a stream's window too large");
                        }
                    }
                }
                frame::MAX_FRAME_SIZE => {
                    if !(16_384..=16_777_215).contains(&value) {
                        return fault(Reason::PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range");
                    }
                    self.peer_frame = value as usize;
                }
                _ => {}
            }
        }
        self.got_settings = true;
        frame::head(&mut self.out, 0, frame::SETTINGS, frame::ACK, 0);
        Ok(())
    }

    pub(super) fn window_update(&mut self, head: Head, payload: &[u8]) -> Res<()> {
        if head.len != 4 {
            return fault(Reason::FRAME_SIZE_ERROR, "a WINDOW_UPDATE not 4 bytes long");
        }
        let increment = i64::from(frame::be31(payload));
        if head.stream == 0 {
            if increment == 0 {
                return fault(Reason::PROTOCOL_ERROR, "a connection WINDOW_UPDATE of 0");
            }
            self.send_window += increment;
            if self.send_window > frame::MAX_WINDOW {
                return fault(Reason::FLOW_CONTROL_ERROR, "the connection's window too large");
            }
            return Ok(());
        }
        if head.stream > self.last_id {
            return fault(Reason::PROTOCOL_ERROR, "WINDOW_UPDATE on a stream never opened");
        }
        let Some(stream) = self.streams.get_mut(&head.stream) else { return Ok(()) };
        stream.send_window += increment;
        if increment == 0 {
            return self.reset(head.stream, Reason::PROTOCOL_ERROR);
        }
        if stream.send_window > frame::MAX_WINDOW {
            return self.reset(head.stream, Reason::FLOW_CONTROL_ERROR);
        }
        Ok(())
    }

    pub(super) fn rst_stream(&mut self, head: Head, payload: &[u8]) -> Res<()> {
        if head.stream == 0 {
            return fault(Reason::PROTOCOL_ERROR, "RST_STREAM on stream 0");
        }
        if head.len != 4 {
            return fault(Reason::FRAME_SIZE_ERROR, "a RST_STREAM not 4 bytes long");
        }
        if head.stream > self.last_id {
            return fault(Reason::PROTOCOL_ERROR, "RST_STREAM on a stream never opened");
        }
        let reason = Reason(frame::be32(payload));
        if let Some(stream) = self.streams.remove(&head.stream) {
            stream.cancel(match reason {
                Reason::REFUSED_STREAM => Broken::Refused,
                reason => Broken::Reset(reason),
            });
            // Rapid reset is a client's attack on a server; an upstream resets what it must.
            if self.role == Role::Server {
                self.flood(true)?;
            }
        }
        Ok(())
    }

    /// The peer's GOAWAY: it takes no new streams, and a client's streams past the last it
    /// names were not processed (RFC 9113 §6.8).
    pub(super) fn peer_goaway(&mut self, head: Head, payload: &[u8]) -> Res<()> {
        if head.stream != 0 || head.len < 8 {
            return fault(Reason::PROTOCOL_ERROR, "a malformed GOAWAY");
        }
        let last = frame::be31(payload);
        self.peer_goaway = Some(self.peer_goaway.map_or(last, |before| before.min(last)));
        if self.role == Role::Client {
            let unprocessed: Vec<u32> = self.streams.keys().copied().filter(|&id| id > last).collect();
            for id in unprocessed {
                if let Some(stream) = self.streams.remove(&id) {
                    stream.cancel(Broken::Refused);
                }
            }
        }
        Ok(())
    }

    pub(super) fn ping(&mut self, head: Head, payload: &[u8]) -> Res<()> {
        if head.stream != 0 {
            return fault(Reason::PROTOCOL_ERROR, "PING on a stream");
        }
        let Ok(data) = <&[u8; 8]>::try_from(payload) else {
            return fault(Reason::FRAME_SIZE_ERROR, "a PING not 8 bytes long");
        };
        match head.flags & frame::ACK {
            0 => frame::ping(&mut self.out, frame::ACK, data),
            _ => self.ping_out = false,
        }
        Ok(())
    }

    /// Resets a stream (a stream error): its waiter stops, its body breaks.
    pub fn reset(&mut self, id: u32, reason: Reason) -> Res<()> {
        self.reset_for(id, reason, Broken::Other("the stream broke the protocol"));
        Ok(())
    }

    /// Resets a stream, telling its waiter `broken`.
    pub fn reset_for(&mut self, id: u32, reason: Reason, broken: Broken) {
        frame::rst_stream(&mut self.out, id, reason);
        if let Some(stream) = self.streams.remove(&id) {
            stream.cancel(broken);
        }
    }

    /// Resets a stream before it is one: its head was decoded (the table stays in step), and
    /// nothing else is kept.
    pub(super) fn refuse(&mut self, id: u32, reason: Reason) -> Res<()> {
        frame::rst_stream(&mut self.out, id, reason);
        Ok(())
    }

    /// Window that readers took (or nobody will), given back once enough has gathered.
    pub(super) fn give_back(&mut self, stream: u32, n: usize) {
        if n == 0 {
            return;
        }
        if stream != 0
            && let Some(s) = self.streams.get_mut(&stream)
            && s.recv.is_some()
        {
            s.credit += n;
            if s.credit >= CREDIT_STEP {
                s.recv_window += s.credit as i64;
                frame::window_update(&mut self.out, stream, s.credit as u32);
                s.credit = 0;
            }
        }
        self.conn_credit += n;
        if self.conn_credit >= CREDIT_STEP {
            self.recv_window += self.conn_credit as i64;
            frame::window_update(&mut self.out, 0, self.conn_credit as u32);
            self.conn_credit = 0;
        }
    }

    /// Gives back the window the bodies' readers took since last asked, and cancels the
    /// streams whose readers let go of them (a client's callers).
    pub fn credit(&mut self) {
        let notes = std::mem::take(&mut *self.credit.notes.locked());
        for (stream, n) in notes.taken {
            self.give_back(stream, n);
        }
        for id in notes.dropped {
            if self.streams.contains_key(&id) {
                self.reset_for(id, Reason::CANCEL, Broken::Other("the caller went away"));
            }
        }
    }

    /// A graceful shutdown: GOAWAY naming the last stream opened, which is served with those
    /// before it; streams opened after are ignored.
    pub fn shutdown(&mut self) {
        self.goaway = Some(self.last_id);
        frame::goaway(&mut self.out, self.last_id, Reason::NO_ERROR);
    }

    /// The last stream the peer opened, as GOAWAY names it: a client's peer opens none.
    pub(super) fn peer_last(&self) -> u32 {
        match self.role {
            Role::Server => self.last_id,
            Role::Client => 0,
        }
    }

    /// GOAWAY for a connection error; the last stream processed is the last opened.
    pub fn fail(&mut self, fault: &Fault) {
        let last = self.peer_last();
        frame::goaway(&mut self.out, last, fault.0);
        self.abandon(Broken::Other(fault.1));
    }

    /// The connection is gone: every stream's waiter hears why.
    pub fn abandon(&mut self, broken: Broken) {
        for (_, stream) in std::mem::take(&mut self.streams) {
            stream.cancel(broken);
        }
    }
}
