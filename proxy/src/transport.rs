//! A connection that is plaintext or TLS, decided when it opens: the inbound listener takes
//! both (in permissive mode, or to answer plaintext with a clear refusal), and the outbound
//! client speaks mTLS only to endpoints with an identity.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub enum Stream<T> {
    Plain(TcpStream),
    /// Boxed: a TLS session is large, and most plaintext connections should not pay for it.
    Tls(Box<T>),
}

/// A connection whose bytes on the wire this proxy can make itself, for [`crate::batch`] to
/// send.
pub trait Wire {
    /// Appends to `out` what carries `plain` to the peer (the bytes themselves, or the TLS
    /// records sealing them) and gives the socket to send it on.
    fn wire(&mut self, plain: &[u8], out: &mut Vec<u8>) -> io::Result<RawFd>;
}

impl Wire for TcpStream {
    fn wire(&mut self, plain: &[u8], out: &mut Vec<u8>) -> io::Result<RawFd> {
        out.extend_from_slice(plain);
        Ok(self.as_raw_fd())
    }
}

impl<T: Wire> Wire for Stream<T> {
    fn wire(&mut self, plain: &[u8], out: &mut Vec<u8>) -> io::Result<RawFd> {
        match self {
            Stream::Plain(tcp) => tcp.wire(plain, out),
            Stream::Tls(tls) => tls.wire(plain, out),
        }
    }
}

/// A TLS session sealed here rather than by the stream's own writes: the records go out in
/// the same order, since every record the session holds (a session ticket, a key update, what
/// an earlier write left) is taken before the new one.
macro_rules! seal_tls {
    ($($tls:ty),*) => {$(
        impl Wire for $tls {
            fn wire(&mut self, plain: &[u8], out: &mut Vec<u8>) -> io::Result<RawFd> {
                use std::io::Write;
                let (tcp, session) = self.get_mut();
                let mut rest = plain;
                loop {
                    while session.wants_write() {
                        session.write_tls(out)?;
                    }
                    if rest.is_empty() {
                        return Ok(tcp.as_raw_fd());
                    }
                    match session.writer().write(rest)? {
                        0 => return Err(io::ErrorKind::WriteZero.into()),
                        n => rest = &rest[n..],
                    }
                }
            }
        }
    )*};
}

seal_tls!(tokio_rustls::server::TlsStream<TcpStream>, tokio_rustls::client::TlsStream<TcpStream>);

/// A TLS record starts with its content type; 22 is a handshake (the ClientHello).
pub const TLS_HANDSHAKE: u8 = 0x16;

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}

impl hyper_util::client::legacy::connect::Connection for Stream<tokio_rustls::client::TlsStream<TcpStream>> {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        let tcp = match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        };
        tcp.connected()
    }
}

/// A connection that holds a slot of its service's `maxConnections` for as long as it lives,
/// and counts the responses it carried (for `maxRequestsPerConnection`).
pub struct Held<S> {
    pub io: S,
    pub _slot: Option<tokio::sync::OwnedSemaphorePermit>,
    pub served: Served,
}

/// Responses a connection carried; the client puts it in each response's extensions.
#[derive(Clone, Default)]
pub struct Served(pub std::sync::Arc<std::sync::atomic::AtomicU32>);

impl<S: Wire> Wire for Held<S> {
    fn wire(&mut self, plain: &[u8], out: &mut Vec<u8>) -> io::Result<RawFd> {
        self.io.wire(plain, out)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Held<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

/// Writes straight through to the wrapped connection in field `io`.
macro_rules! write_through {
    ($wrapper:ident) => {
        impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $wrapper<S> {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.io.is_write_vectored()
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_flush(cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
            }
        }
    };
}
pub(crate) use write_through;

write_through!(Held);

impl<S: hyper_util::client::legacy::connect::Connection> hyper_util::client::legacy::connect::Connection for Held<S> {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        self.io.connected().extra(self.served.clone())
    }
}
