//! A TLS server stream that holds no buffer while its connection is idle.
//!
//! tokio-rustls drives rustls' buffered connection, whose deframer keeps a 4 KB read buffer for
//! as long as the connection lives. The control plane holds a connection per proxy, idle
//! nearly all the time, so at 10,000 proxies those buffers alone were 40 MB. This stream drives
//! rustls' unbuffered API instead: bytes read wait in a buffer only until they make whole
//! records, decrypted bytes only until the reader takes them, and records written only until
//! the socket takes them. Each buffer is freed once empty.

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What one read from the socket may take. It sits on the stack: only what arrived is kept.
const READ_SIZE: usize = 8 * 1024;
/// Plaintext one write encrypts at most, and records waiting for the socket past which a
/// write waits too: a large body goes out in bounded steps.
const WRITE_AT_ONCE: usize = 64 * 1024;
/// A record's bytes beyond its plaintext: header, content type and AEAD tag.
const RECORD_OVERHEAD: usize = 5 + 1 + 16;
const MAX_FRAGMENT: usize = 16 * 1024;

/// A server's TLS connection over `IO`, after its handshake ([`accept`]).
pub struct Tls<IO> {
    io: IO,
    conn: UnbufferedServerConnection,
    /// Bytes read that do not yet make a whole record.
    incoming: Vec<u8>,
    /// Decrypted bytes the reader has not taken yet, from `taken` on.
    plaintext: Vec<u8>,
    taken: usize,
    /// Records waiting for the socket, from `sent` on.
    outgoing: Vec<u8>,
    sent: usize,
    /// The peer sent close_notify, or its socket reached end of file.
    read_closed: bool,
    /// Our close_notify is queued; nothing more may be written.
    close_queued: bool,
}

/// Completes a server handshake on `io`.
pub async fn accept<IO>(config: Arc<rustls::ServerConfig>, io: IO) -> io::Result<Tls<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let conn = UnbufferedServerConnection::new(config).map_err(invalid)?;
    let mut tls = Tls {
        io,
        conn,
        incoming: Vec::new(),
        plaintext: Vec::new(),
        taken: 0,
        outgoing: Vec::new(),
        sent: 0,
        read_closed: false,
        close_queued: false,
    };
    std::future::poll_fn(|cx| tls.poll_handshake(cx)).await?;
    Ok(tls)
}

/// What one turn of rustls' state machine did.
enum Turn {
    /// It made progress (queued records, stashed plaintext, saw a close): turn again.
    Again,
    /// It can go no further without more bytes from the peer.
    NeedsRead,
    /// It encrypted this many bytes of the plaintext it was given.
    Encrypted(usize),
    /// Both sides closed: nothing more can be read or written.
    Closed,
}

impl<IO> Tls<IO> {
    /// The certificates the client presented, its own first.
    pub fn peer_certificates(&self) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        self.conn.peer_certificates()
    }

    /// The protocol agreed by ALPN.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// Processes what was read and does what the connection's state allows: stashes
    /// application data, queues handshake records and alerts, and encrypts `write` (or, with
    /// `close`, a close_notify) once application data may be sent.
    fn turn(&mut self, write: &[u8], close: bool) -> io::Result<Turn> {
        let UnbufferedStatus { discard, state } = self.conn.process_tls_records(&mut self.incoming);
        let turn = match state {
            Err(e) => {
                self.queue_alert();
                return Err(invalid(e));
            }
            Ok(ConnectionState::ReadTraffic(mut records)) => {
                while let Some(record) = records.next_record() {
                    self.plaintext.extend_from_slice(record.map_err(invalid)?.payload);
                }
                Turn::Again
            }
            Ok(ConnectionState::EncodeTlsData(mut record)) => {
                append(&mut self.outgoing, 512, |out| record.encode(out).map_err(encode_error))?;
                Turn::Again
            }
            // The records wait in `outgoing`, which the handshake, writes and flushes send.
            Ok(ConnectionState::TransmitTlsData(transmit)) => {
                transmit.done();
                Turn::Again
            }
            Ok(ConnectionState::WriteTraffic(mut traffic)) if close && !self.close_queued => {
                self.close_queued = true;
                append(&mut self.outgoing, 64, |out| traffic.queue_close_notify(out).map_err(encrypt_error))?;
                Turn::Again
            }
            Ok(ConnectionState::WriteTraffic(mut traffic)) if !write.is_empty() && !self.close_queued => {
                let hint = write.len() + RECORD_OVERHEAD * (write.len() / MAX_FRAGMENT + 1);
                append(&mut self.outgoing, hint, |out| traffic.encrypt(write, out).map_err(encrypt_error))?;
                Turn::Encrypted(write.len())
            }
            Ok(ConnectionState::WriteTraffic(_) | ConnectionState::BlockedHandshake) => Turn::NeedsRead,
            Ok(ConnectionState::PeerClosed) => {
                self.read_closed = true;
                Turn::Again
            }
            Ok(ConnectionState::Closed) => {
                self.read_closed = true;
                Turn::Closed
            }
            Ok(_) => return Err(invalid("early data, which this server does not accept")),
        };
        self.incoming.drain(..discard);
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        }
        Ok(turn)
    }

    /// Queues the alert rustls holds after an error, so the peer learns why the connection
    /// ends; the error itself is what the caller returns. rustls hands out what it holds before
    /// it looks at the input again (which would fail again).
    fn queue_alert(&mut self) {
        while self.conn.wants_write() {
            let UnbufferedStatus { state, .. } = self.conn.process_tls_records(&mut self.incoming);
            let Ok(ConnectionState::EncodeTlsData(mut record)) = state else { return };
            if append(&mut self.outgoing, 64, |out| record.encode(out).map_err(encode_error)).is_err() {
                return;
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Tls<IO> {
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.turn(&[], false) {
                Ok(Turn::Again) => continue,
                Ok(Turn::Closed) => return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into())),
                Ok(Turn::NeedsRead | Turn::Encrypted(_)) => {
                    // Our flight goes out before we wait for the peer's.
                    ready!(self.poll_send(cx))?;
                    if !self.conn.is_handshaking() {
                        return Poll::Ready(Ok(()));
                    }
                    ready!(self.poll_fill(cx))?;
                }
                Err(e) => {
                    let _ = self.poll_send(cx);
                    return Poll::Ready(Err(e));
                }
            }
        }
    }

    /// Reads what the socket has into `incoming`. End of file before the peer's close_notify
    /// is an error, as with rustls' own reader: the peer's data may have been cut short.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut stack = [0u8; READ_SIZE];
        let mut buf = ReadBuf::new(&mut stack);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
        if buf.filled().is_empty() {
            self.read_closed = true;
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed without close_notify")));
        }
        self.incoming.extend_from_slice(buf.filled());
        Poll::Ready(Ok(()))
    }

    /// Writes the queued records to the socket, then frees their buffer.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.outgoing[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.outgoing = Vec::new();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Tls<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.taken < this.plaintext.len() {
                let n = buf.remaining().min(this.plaintext.len() - this.taken);
                buf.put_slice(&this.plaintext[this.taken..this.taken + n]);
                this.taken += n;
                if this.taken == this.plaintext.len() {
                    this.plaintext = Vec::new();
                    this.taken = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.read_closed {
                return Poll::Ready(Ok(()));
            }
            match this.turn(&[], false)? {
                Turn::Again | Turn::Closed => continue,
                // Records rustls queued meanwhile (an answer to a key update) go out with the
                // next write or flush: a read never writes, nor a write reads, since a reader
                // and a writer in two tasks would take each other's wakers.
                Turn::NeedsRead | Turn::Encrypted(_) => ready!(this.poll_fill(cx))?,
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Tls<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.close_queued {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if this.outgoing.len() - this.sent >= WRITE_AT_ONCE {
            ready!(this.poll_send(cx))?;
        }
        let data = &data[..data.len().min(WRITE_AT_ONCE)];
        loop {
            match this.turn(data, false)? {
                Turn::Again => continue,
                Turn::Encrypted(n) => {
                    if let Poll::Ready(Err(e)) = this.poll_send(cx) {
                        return Poll::Ready(Err(e));
                    }
                    return Poll::Ready(Ok(n));
                }
                Turn::Closed => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                // Only before the handshake ends, which `accept` waits for.
                Turn::NeedsRead => return Poll::Ready(Err(invalid("written to before the handshake ended"))),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while !this.close_queued {
            match this.turn(&[], true)? {
                Turn::Again => continue,
                Turn::NeedsRead | Turn::Encrypted(_) | Turn::Closed => break,
            }
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// Appends what `encode` writes to `out`, giving it `room` bytes first and as many as it
/// says it needs after.
fn append(
    out: &mut Vec<u8>,
    mut room: usize,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, Result<InsufficientSizeError, io::Error>>,
) -> io::Result<()> {
    let start = out.len();
    loop {
        out.resize(start + room, 0);
        match encode(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(Ok(InsufficientSizeError { required_size })) if required_size > room => room = required_size,
            Err(Ok(_)) => return Err(invalid("rustls asked for less room than it was given")),
            Err(Err(e)) => {
                out.truncate(start);
                return Err(e);
            }
        }
    }
}

fn encode_error(e: EncodeError) -> Result<InsufficientSizeError, io::Error> {
    match e {
        EncodeError::InsufficientSize(size) => Ok(size),
        EncodeError::AlreadyEncoded => Err(invalid(e)),
    }
}

fn encrypt_error(e: EncryptError) -> Result<InsufficientSizeError, io::Error> {
    match e {
        EncryptError::InsufficientSize(size) => Ok(size),
        EncryptError::EncryptExhausted => Err(invalid(e)),
    }
}

fn invalid(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

#[cfg(test)]
mod tests;
