//! HTTP/1.1 of the proxy's own, for the common request: HTTP/1.1 with its body in hand (none,
//! or a `Content-Length` up to the replay limit).
//!
//! hyper serves every protocol feature, but for a small request most of the proxy's cost was
//! hyper's machinery around it: a server dispatcher, then a pooled client that hands each
//! request through a channel to a connection task running a second HTTP/1 state machine.
//! Here the downstream connection is read and written in its own task ([`serve_connection`]),
//! and the upstream request is written and its response read in the request's task over a
//! pooled connection ([`Pool`]). Whatever is not the common case goes to hyper: a connection
//! whose request is HTTP/2, HTTP/1.0, an upgrade, `Expect: 100-continue`, or a chunked or large
//! body is handed over whole, with every byte already read (never before its first request's
//! head is all there, so hyper never waits for it); streamed request bodies use hyper's
//! client (HTTP/2 upstreams have their own, see `h2`). A head that cannot be served is answered here (400, 414 or
//! 431) and the connection closed: no byte of it is ever read again as another request. A response from the pool keeps its
//! headers as the upstream wrote them (see [`raw`]).

mod client;
mod raw;
mod server;
mod wire;

pub use client::Pool;
pub use raw::into_header_map;
pub use server::{Rewind, Served, Socket, date, refusal, serve_connection};
pub use wire::{MAX_HEAD, Refused, check_parsed, strip_nominated};
