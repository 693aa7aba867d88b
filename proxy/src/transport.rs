//! A connection that is plaintext or TLS, decided when it opens: the inbound listener takes
//! both (in permissive mode, or to answer plaintext with a clear refusal), and the outbound
//! client speaks mTLS only to endpoints with an identity.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub enum Stream<T> {
    Plain(TcpStream),
    /// Boxed: a TLS session is large, and most plaintext connections should not pay for it.
    Tls(Box<T>),
}

impl<T> Stream<T> {
    /// The descriptor of a plaintext connection, whose written bytes are what the peer reads.
    pub fn plain_fd(&self) -> Option<std::os::fd::RawFd> {
        match self {
            Stream::Plain(tcp) => Some(std::os::fd::AsRawFd::as_raw_fd(tcp)),
            Stream::Tls(_) => None,
        }
    }
}

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
