//! `grpcup`: the gRPC upstream of `bench/run.sh`. An HTTP/2 (h2c) server that answers every
//! call at once, as a fast gRPC service would: `/bench.Echo/Say` (unary) with one message,
//! `/bench.Echo/Stream` (server streaming) with 100, each then `grpc-status: 0` in the
//! trailers. It reads the request body to its end first, so a client-streaming call's messages
//! all travel. No gRPC library: the benchmark measures the proxies, and this answers in a few
//! microseconds on one thread.

use bytes::Bytes;
use clap::Parser;
use http_body_util::BodyExt;
use hyper::body::Frame;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

#[derive(Parser)]
struct Args {
    /// Where to listen, e.g. 127.0.0.1:18950.
    #[arg(long)]
    listen: std::net::SocketAddr,
}

/// One gRPC message: not compressed, its length, its bytes.
fn message(payload: &[u8]) -> Bytes {
    let mut m = vec![0u8];
    m.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    m.extend_from_slice(payload);
    Bytes::from(m)
}

/// A body of frames made in advance: the messages, then the trailers.
struct Frames(VecDeque<Frame<Bytes>>);

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }
}

async fn answer(req: http::Request<hyper::body::Incoming>) -> Result<http::Response<Frames>, Infallible> {
    let messages = if req.uri().path() == "/bench.Echo/Stream" { 100 } else { 1 };
    // The whole request first: a client-streaming call's messages are read, not dropped.
    let _ = req.into_body().collect().await;
    let one = message(b"hello from the bench upstream");
    let mut frames: VecDeque<Frame<Bytes>> = (0..messages).map(|_| Frame::data(one.clone())).collect();
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    frames.push_back(Frame::trailers(trailers));
    let mut resp = http::Response::new(Frames(frames));
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
    Ok(resp)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let mut http2 = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
            http2.max_concurrent_streams(10_000);
            let _ = http2.serve_connection(io, hyper::service::service_fn(answer)).await;
        });
    }
}
