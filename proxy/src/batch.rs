//! Socket writes batched per scheduler pass: a connection's task hands its message to the
//! thread's batch and goes on; one task, woken by the first write of a pass and so run after
//! the others, submits them all to the thread's io_uring in one `io_uring_enter`. A write alone
//! in its pass (a lightly loaded proxy) goes out with one `send` instead: the ring's round trip
//! (the entry, its completion, the ring's readiness) cost more than the system call it replaced,
//! with nothing to share it (3-7 % of the proxy's CPU at 20-80 % load).
//!
//! Why: a sidecar shares a core with its application. Each `send` wakes the peer (the
//! upstream, the client), and the wakee preempted the proxy as the call returned: a pair of
//! context switches per request, about a third of the proxy's CPU (README, "What bounds the
//! proxy's CPU"). Submitted together, the peers are woken once per pass, and the sends cost one
//! system call between them.
//!
//! Only the single-threaded runtime (the sidecar's default) batches, since its tasks never leave
//! the thread whose ring holds their bytes. TLS connections too: the proxy seals the records
//! itself ([`Wire`]). Elsewhere, where io_uring is not allowed (seccomp,
//! `kernel.io_uring_disabled`), or with `TRELLIS_IO_URING=off`, writes go straight to the socket.
//!
//! The ring owns a write's bytes until the kernel completes it. A connection's next write,
//! shutdown or handoff waits for ([`Pending::settle`]) the one before, so bytes stay in order
//! and an error is not lost; a connection dropped with a write still queued submits it first,
//! so its descriptor cannot be closed, and the number reused, before the kernel holds the socket.

use io_uring::{IoUring, opcode, types};
use std::os::fd::{AsRawFd, RawFd};
// MSG_NOSIGNAL: a peer gone is an error to report, not a SIGPIPE.
use libc::{EAGAIN, EBUSY, EINTR, MSG_DONTWAIT, MSG_NOSIGNAL};
use std::cell::RefCell;
use std::io;
use std::task::{Context, Poll, Waker};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// A connection whose bytes on the wire this proxy can make itself, for the batch to send.
pub trait Wire {
    /// Appends to `out` what carries `plain` to the peer (the bytes themselves, or the TLS
    /// records sealing them) and gives the socket to send it on.
    fn wire(&mut self, plain: &[u8], out: &mut Vec<u8>) -> io::Result<RawFd>;
}

impl Wire for tokio::net::TcpStream {
    fn wire(&mut self, plain: &[u8], out: &mut Vec<u8>) -> io::Result<RawFd> {
        out.extend_from_slice(plain);
        Ok(self.as_raw_fd())
    }
}

/// Submission queue entries; a pass rarely queues more than one write per connection.
const ENTRIES: u32 = 1024;
/// Buffers kept for reuse, and the largest kept: a busy connection does not allocate per write,
/// an idle proxy does not hold a burst's worth.
const SPARE: usize = 64;
const SPARE_CAPACITY: usize = 32 * 1024;

thread_local! {
    static RING: RefCell<Option<Ring>> = const { RefCell::new(None) };
}

/// How [`start`] left this thread.
#[derive(Debug)]
pub enum Mode {
    Batched,
    /// Writes go straight to the socket, and why.
    Direct(String),
}

/// Sets up this thread's ring and the task that submits it, when the runtime is single-threaded
/// and io_uring is allowed. Idempotent.
pub fn start() -> Mode {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::try_current().map(|h| h.runtime_flavor()).ok() != Some(RuntimeFlavor::CurrentThread) {
        return Mode::Direct("the runtime has more than one thread".into());
    }
    if RING.with_borrow(Option::is_some) {
        return Mode::Batched;
    }
    let ring = match IoUring::new(ENTRIES) {
        Ok(ring) => ring,
        Err(e) => return Mode::Direct(format!("io_uring is not available: {e}")),
    };
    // SAFETY: the ring owns its descriptor, open until the ring (inside the AsyncFd) drops.
    #[allow(unsafe_code)]
    let ring = match unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) } {
        Ok(ring) => ring,
        Err(e) => return Mode::Direct(format!("the io_uring could not be registered: {e}")),
    };
    RING.set(Some(Ring {
        ring,
        slots: Vec::new(),
        free: Vec::new(),
        spare: Vec::new(),
        held: Vec::new(),
        reaped: Vec::new(),
        queued: 0,
        in_flight: 0,
        flusher: None,
        stats: Stats::default(),
    }));
    tokio::spawn(flusher());
    Mode::Batched
}

/// What this thread's batching did (all 0 when it does not batch).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Writes handed over.
    pub writes: u64,
    /// `io_uring_enter` calls that submitted some: the writes not sent alone, over these, are
    /// the batch size.
    pub submits: u64,
    /// Writes alone in their pass, sent with one `send`.
    pub alone: u64,
}

pub fn stats() -> Stats {
    RING.with_borrow(|ring| ring.as_ref().map_or(Stats::default(), |r| r.stats))
}

/// This thread's ring and the writes it holds, each in a slot until the kernel completes it.
struct Ring {
    ring: AsyncFd<IoUring>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    spare: Vec<Vec<u8>>,
    /// Writes handed over in this pass, not yet in the ring.
    held: Vec<u32>,
    /// The completions of one reap, taken off the ring before they are settled (the list is
    /// kept: one allocation per pass is a good part of a request's).
    reaped: Vec<(u64, i32)>,
    /// Entries pushed and not yet submitted, and submitted and not yet completed.
    queued: usize,
    in_flight: usize,
    flusher: Option<Waker>,
    stats: Stats,
}

#[derive(Default)]
struct Slot {
    /// Bumped as the slot is freed: a [`Pending`] holding an older one knows its write is done.
    generation: u32,
    write: Option<Write>,
}

/// The bytes of one write, how many went out, and who waits for the rest.
struct Write {
    fd: RawFd,
    buf: Vec<u8>,
    sent: usize,
    /// The socket was full: the kernel waits for room before it tries again, rather than
    /// failing at once (`IORING_RECVSEND_POLL_FIRST`), so a retry never spins.
    poll_first: bool,
    /// The connection's task, waiting for the write to settle.
    owner: Option<Waker>,
    /// The connection was dropped: no one will ask how the write ended.
    orphan: bool,
    failed: Option<io::Error>,
}

impl Ring {
    /// Queues the rest of the write in slot `index`. False when the queue stays full.
    fn push(&mut self, index: u32) -> bool {
        let slot = &self.slots[index as usize];
        let Some(w) = slot.write.as_ref() else { return true };
        let rest = &w.buf[w.sent..];
        let entry = opcode::Send::new(types::Fd(w.fd), rest.as_ptr(), rest.len().min(u32::MAX as usize) as u32)
            .flags(MSG_NOSIGNAL)
            .ioprio(if w.poll_first { RECVSEND_POLL_FIRST } else { 0 })
            .build()
            .user_data(key(index, slot.generation));
        for _ in 0..3 {
            // SAFETY: the buffer stays in its slot, unmoved (a Vec's heap block), until the
            // completion for this entry is reaped; a dropped ring leaks the buffers in flight.
            #[allow(unsafe_code)]
            let pushed = unsafe { self.ring.get_mut().submission().push(&entry) };
            if pushed.is_ok() {
                self.queued += 1;
                return true;
            }
            self.submit();
        }
        false
    }

    /// Sends what this pass handed over: alone, with one `send`; else in the ring, submitted
    /// together. True when the kernel took them all.
    fn flush(&mut self) -> bool {
        // A partly sent write stays held, and goes on in the ring.
        if let [index] = self.held[..]
            && self.queued == 0
            && self.send_now(index)
        {
            self.held.clear();
            return true;
        }
        for index in std::mem::take(&mut self.held) {
            if !self.push(index) {
                self.finish(index, Some(queue_full()));
            }
        }
        self.submit()
    }

    /// Sends the write in slot `index` straight away. False when the socket did not take all of
    /// it: the rest then waits in the ring for room.
    fn send_now(&mut self, index: u32) -> bool {
        let Some(w) = self.slots[index as usize].write.as_mut() else { return true };
        let rest = &w.buf[w.sent..];
        // SAFETY: `rest` is valid for its length; the descriptor is the connection's, open while
        // its write is held.
        #[allow(unsafe_code)]
        let n = unsafe { libc::send(w.fd, rest.as_ptr().cast(), rest.len(), MSG_NOSIGNAL | MSG_DONTWAIT) };
        self.stats.alone += 1;
        let failed = match n {
            n if n >= 0 && w.sent + n as usize >= w.buf.len() => None,
            n if n >= 0 => {
                w.sent += n as usize;
                w.poll_first = true;
                return false;
            }
            _ => match io::Error::last_os_error() {
                e if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {
                    w.poll_first = e.kind() == io::ErrorKind::WouldBlock;
                    return false;
                }
                e => Some(e),
            },
        };
        self.finish(index, failed);
        true
    }

    /// Hands the queued entries to the kernel. True when it took them all.
    fn submit(&mut self) -> bool {
        if self.queued == 0 {
            return true;
        }
        match self.ring.get_ref().submit() {
            Ok(n) => {
                self.stats.submits += u64::from(n > 0);
                let n = n.min(self.queued);
                self.queued -= n;
                self.in_flight += n;
            }
            // EBUSY: completions wait to be reaped; make room, and the entries go on the next try.
            Err(e) if e.raw_os_error() == Some(EBUSY) => self.reap(),
            Err(e) => tracing::warn!(error = %e, "io_uring submit failed; retrying"),
        }
        self.queued == 0
    }

    /// Settles every completed write: done, failed, or (partly sent) queued again for the rest.
    fn reap(&mut self) {
        let mut requeue = Vec::new();
        let mut done = std::mem::take(&mut self.reaped);
        done.extend(self.ring.get_mut().completion().map(|c| (c.user_data(), c.result())));
        for (user_data, result) in done.drain(..) {
            self.in_flight = self.in_flight.saturating_sub(1);
            let (index, generation) = split(user_data);
            let Some(slot) = self.slots.get_mut(index as usize) else { continue };
            let Some(w) = slot.write.as_mut().filter(|_| slot.generation == generation) else { continue };
            let failed = match result {
                n if n > 0 && w.sent + n as usize >= w.buf.len() => None,
                n if n > 0 => {
                    w.sent += n as usize;
                    w.poll_first = true;
                    requeue.push(index);
                    continue;
                }
                0 => Some(io::ErrorKind::WriteZero.into()),
                e if -e == EINTR || -e == EAGAIN => {
                    w.poll_first = true;
                    requeue.push(index);
                    continue;
                }
                e => Some(io::Error::from_raw_os_error(-e)),
            };
            self.finish(index, failed);
        }
        for index in requeue {
            if !self.push(index) {
                self.finish(index, Some(queue_full()));
            }
        }
        self.reaped = done;
    }

    /// A write is over: its owner hears of it; the slot is freed unless an error waits for the
    /// owner to collect it.
    fn finish(&mut self, index: u32, failed: Option<io::Error>) {
        let Some(w) = self.slots[index as usize].write.as_mut() else { return };
        if let Some(owner) = w.owner.take() {
            owner.wake();
        }
        let keep = failed.is_some() && !w.orphan;
        w.failed = failed;
        if !keep {
            self.release(index);
        }
    }

    fn release(&mut self, index: u32) -> Option<io::Error> {
        let slot = &mut self.slots[index as usize];
        slot.generation = slot.generation.wrapping_add(1);
        let mut w = slot.write.take()?;
        self.free.push(index);
        if self.spare.len() < SPARE && w.buf.capacity() <= SPARE_CAPACITY {
            w.buf.clear();
            self.spare.push(w.buf);
        }
        w.failed
    }
}

fn queue_full() -> io::Error {
    io::Error::other("the io_uring submission queue stays full")
}

const RECVSEND_POLL_FIRST: u16 = 1;

fn key(index: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(index)
}

fn split(user_data: u64) -> (u32, u32) {
    (user_data as u32, (user_data >> 32) as u32)
}

/// Submits what the pass queued, once the connections woken with it have run; reaps what the
/// kernel completed, also later (a write to a full socket waits in the kernel).
async fn flusher() {
    // Dropped with the runtime: the ring goes with it.
    struct Stop;
    impl Drop for Stop {
        fn drop(&mut self) {
            if let Ok(Some(mut ring)) = RING.try_with(|r| r.borrow_mut().take()) {
                // The kernel may still read the buffers of writes in flight: never free them.
                if ring.in_flight > 0 {
                    std::mem::forget(std::mem::take(&mut ring.slots));
                }
            }
        }
    }
    let _stop = Stop;
    std::future::poll_fn(|cx: &mut Context<'_>| {
        RING.with_borrow_mut(|ring| {
            let Some(ring) = ring.as_mut() else { return Poll::Ready(()) };
            loop {
                if !ring.flush() {
                    // Tried again on the next pass.
                    cx.waker().wake_by_ref();
                    break;
                }
                ring.reap();
                if ring.queued > 0 {
                    continue;
                }
                if ring.in_flight == 0 {
                    break;
                }
                match ring.ring.poll_read_ready(cx) {
                    // Cleared before the reap, so a completion posted meanwhile is not missed.
                    Poll::Ready(Ok(mut ready)) => ready.clear_ready(),
                    Poll::Ready(Err(e)) => {
                        tracing::warn!(error = %e, "io_uring readiness failed");
                        break;
                    }
                    Poll::Pending => break,
                }
            }
            ring.flusher = Some(cx.waker().clone());
            Poll::Pending
        })
    })
    .await
}

/// A connection's write in the ring, if one is. Declare it before the socket in a struct (fields
/// drop in order), or after it among locals: dropped, it submits a write still queued.
#[derive(Default)]
pub struct Pending(Option<u64>);

impl Pending {
    /// Writes `bytes` whole: queued in the ring when this thread batches, else straight to
    /// `io`. Waits for the write before first.
    pub async fn write<IO: AsyncWrite + Wire + Unpin>(&mut self, io: &mut IO, bytes: &[u8]) -> io::Result<()> {
        self.settle().await?;
        let queued = RING.with_borrow_mut(|ring| {
            let ring = ring.as_mut()?;
            // Copied (or sealed): the callers keep theirs, to retry or reuse.
            let mut buf = ring.spare.pop().unwrap_or_default();
            let fd = match io.wire(bytes, &mut buf) {
                Ok(fd) => fd,
                Err(e) => return Some(Err(e)),
            };
            let index = ring.free.pop().unwrap_or_else(|| {
                ring.slots.push(Slot::default());
                ring.slots.len() as u32 - 1
            });
            let slot = &mut ring.slots[index as usize];
            slot.write = Some(Write { fd, buf, sent: 0, poll_first: false, owner: None, orphan: false, failed: None });
            let generation = slot.generation;
            ring.stats.writes += 1;
            ring.held.push(index);
            if let Some(flusher) = ring.flusher.take() {
                flusher.wake();
            }
            Some(Ok(key(index, generation)))
        });
        match queued {
            Some(Ok(key)) => {
                self.0 = Some(key);
                Ok(())
            }
            Some(Err(e)) => Err(e),
            None => {
                io.write_all(bytes).await?;
                io.flush().await
            }
        }
    }

    /// Waits until the kernel has taken the write in the ring, if any, and gives its error.
    pub async fn settle(&mut self) -> io::Result<()> {
        if self.0.is_none() {
            return Ok(());
        }
        std::future::poll_fn(|cx| self.poll_settle(cx)).await
    }

    fn poll_settle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(key) = self.0 else { return Poll::Ready(Ok(())) };
        let (index, generation) = split(key);
        let done = RING.with_borrow_mut(|ring| {
            let Some(ring) = ring.as_mut() else { return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())) };
            let Some(slot) = ring.slots.get_mut(index as usize) else { return Poll::Ready(Ok(())) };
            if slot.generation != generation {
                return Poll::Ready(Ok(()));
            }
            match slot.write.as_mut() {
                Some(w) if w.failed.is_none() => {
                    w.owner = Some(cx.waker().clone());
                    Poll::Pending
                }
                _ => Poll::Ready(ring.release(index).map_or(Ok(()), Err)),
            }
        });
        if done.is_ready() {
            self.0 = None;
        }
        done
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let Some(key) = self.0.take() else { return };
        let (index, generation) = split(key);
        let _ = RING.try_with(|ring| {
            let mut ring = ring.borrow_mut();
            let Some(ring) = ring.as_mut() else { return };
            let Some(slot) = ring.slots.get_mut(index as usize) else { return };
            if slot.generation != generation {
                return;
            }
            match slot.write.as_mut() {
                Some(w) if w.failed.is_none() => {
                    w.orphan = true;
                    w.owner = None;
                    // The socket closes after this: the kernel must hold it first.
                    if !(0..3).any(|_| ring.flush()) {
                        tracing::error!("a write to a closing connection could not be submitted");
                    }
                }
                _ => {
                    ring.release(index);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        (client, listener.accept().await.unwrap().0)
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    #[tokio::test]
    async fn writes_larger_than_the_socket_takes_arrive_whole_and_in_order() {
        assert!(matches!(start(), Mode::Batched));
        let (mut a, mut b) = pair().await;
        // Far more than the socket buffers hold: the kernel sends it in pieces, later.
        let (first, second) = (pattern(8 << 20, 1), pattern(100_000, 2));
        let (f, s) = (first.clone(), second.clone());
        let writer = tokio::spawn(async move {
            let mut pending = Pending::default();
            pending.write(&mut a, &f).await.unwrap();
            pending.write(&mut a, &s).await.unwrap();
            pending.settle().await.unwrap();
            a
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let mut got = vec![0; first.len() + second.len()];
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), b.read_exact(&mut got)).await;
        read.expect("every byte arrives").unwrap();
        assert!(got[..first.len()] == first[..] && got[first.len()..] == second[..]);
        drop(writer.await.unwrap());
        assert_eq!(b.read(&mut [0; 1]).await.unwrap(), 0);
        let stats = stats();
        assert!(stats.writes >= 2 && stats.submits >= 1, "{stats:?}");
    }

    #[tokio::test]
    async fn the_writes_of_one_pass_share_a_system_call_and_a_lone_write_takes_one() {
        start();
        let mut pairs = Vec::new();
        for _ in 0..3 {
            pairs.push(pair().await);
        }
        let mut pending: Vec<Pending> = (0..3).map(|_| Pending::default()).collect();
        let before = stats();
        // No await between them yields: all three are handed over in one pass.
        for ((a, _), p) in pairs.iter_mut().zip(&mut pending) {
            p.write(a, b"together").await.unwrap();
        }
        for p in &mut pending {
            p.settle().await.unwrap();
        }
        let after = stats();
        assert_eq!(after, Stats { writes: before.writes + 3, submits: before.submits + 1, ..before });
        pending[0].write(&mut pairs[0].0, b" alone").await.unwrap();
        pending[0].settle().await.unwrap();
        assert_eq!(stats(), Stats { writes: after.writes + 1, alone: after.alone + 1, ..after });
        let mut got = [0; 14];
        pairs[0].1.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"together alone");
        for (_, b) in &mut pairs[1..] {
            let mut got = [0; 8];
            b.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"together");
        }
    }

    #[tokio::test]
    async fn a_connection_dropped_with_its_write_still_queued_delivers_it() {
        start();
        let (mut a, mut b) = pair().await;
        let mut pending = Pending::default();
        pending.write(&mut a, b"last words").await.unwrap();
        // Not yet submitted (the flusher has not run): dropping must submit before the close.
        drop(pending);
        drop(a);
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"last words");
    }

    #[tokio::test]
    async fn a_write_to_a_reset_connection_reports_the_error() {
        start();
        let (mut a, b) = pair().await;
        // Linger 0: the close is a reset. (Deprecated for blocking the thread on drop; harmless here.)
        #[allow(deprecated)]
        b.set_linger(Some(std::time::Duration::ZERO)).unwrap();
        drop(b);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut pending = Pending::default();
        pending.write(&mut a, b"to no one").await.unwrap();
        let err = pending.settle().await.unwrap_err();
        assert!(matches!(err.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset), "{err:?}");
        // Reported once; the connection's next write is its own.
        assert!(pending.settle().await.is_ok());
    }

    #[tokio::test]
    async fn tls_records_sealed_for_the_batch_keep_their_order_with_the_streams_own() {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
        use tokio::io::AsyncWriteExt;
        start();
        let cert = rcgen::generate_simple_self_signed(vec!["peer.test".into()]).unwrap();
        let der = CertificateDer::from(cert.cert.der().to_vec());
        let key = PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let (a, b) = pair().await;
        let name = ServerName::try_from("peer.test").unwrap();
        let connecting = tokio_rustls::TlsConnector::from(Arc::new(client)).connect(name, a);
        let accepting = tokio_rustls::TlsAcceptor::from(Arc::new(server)).accept(b);
        let (a, b) = tokio::join!(connecting, accepting);
        let (mut a, mut b) = (a.unwrap(), b.unwrap());
        let big = pattern(200_000, 3);
        let mut pending = Pending::default();
        pending.write(&mut a, b"one ").await.unwrap();
        pending.settle().await.unwrap();
        a.write_all(b"two ").await.unwrap();
        a.flush().await.unwrap();
        pending.write(&mut a, &big).await.unwrap();
        pending.write(&mut a, b" three").await.unwrap();
        pending.settle().await.unwrap();
        let mut want = b"one two ".to_vec();
        want.extend_from_slice(&big);
        want.extend_from_slice(b" three");
        let mut got = vec![0; want.len()];
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), b.read_exact(&mut got)).await;
        read.expect("every record arrives").unwrap();
        assert!(got == want);
        // And back: the server's session may still hold its session tickets, which go first.
        let mut back = Pending::default();
        back.write(&mut b, b"reply").await.unwrap();
        back.settle().await.unwrap();
        let mut got = [0; 5];
        tokio::time::timeout(std::time::Duration::from_secs(10), a.read_exact(&mut got)).await.unwrap().unwrap();
        assert_eq!(&got, b"reply");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_multi_threaded_runtime_writes_straight_to_the_socket() {
        assert!(matches!(start(), Mode::Direct(_)));
        let (mut a, mut b) = pair().await;
        let mut pending = Pending::default();
        pending.write(&mut a, b"direct").await.unwrap();
        assert!(pending.0.is_none());
        let mut got = [0; 6];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"direct");
    }
}
