//! The way into a server's input: a [`LineQueue`] that never blocks its sender, reports how
//! many bytes wait, and keeps lines in order. Behind it a writer task drains the queue into the
//! sink — a child's stdin pipe or an in-memory pipe.
//!
//! For a pipe the queue also writes directly: when nothing is queued and the writer is idle, a
//! line is written from the sender's own task with one non-blocking `writev` (line and newline),
//! so a request reaches the child without waking another task. Only what the pipe does not
//! take at once is queued for the writer. Either way the order is the order of `push`.
//!
//! Owns: lines → bytes on a pipe. Must not touch: processes, sessions, HTTP.

use parking_lot::Mutex;
use std::{
    collections::VecDeque,
    io::{ErrorKind, IoSlice},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use tokio::{
    io::{AsyncWrite, AsyncWriteExt},
    net::unix::pipe,
    sync::Notify,
};
use tokio_util::sync::CancellationToken;

/// Lines waiting for a server's input. Pushing never blocks (a multiplexer can enqueue while
/// holding its lock, in order); callers bound the queue with [`LineQueue::wait_room`] first.
/// The writer ends (closing the input) once every clone is dropped.
pub struct LineQueue {
    shared: Arc<Shared>,
}

/// The server no longer reads its input.
#[derive(Debug)]
pub struct QueueClosed;

struct Shared {
    state: Mutex<State>,
    /// Bytes queued and not yet written.
    queued: AtomicUsize,
    /// Set once nothing more will be written.
    closed: AtomicBool,
    /// Live [`LineQueue`] handles; the writer ends when the last goes.
    senders: AtomicUsize,
    /// Wakes the writer: something was queued, or the last sender left.
    wake: Notify,
    /// Wakes senders waiting for room.
    drained: Notify,
}

struct State {
    /// What the writer has yet to write, in order.
    pending: VecDeque<Piece>,
    /// The writer has taken pieces it has not finished writing.
    busy: bool,
    /// The pipe, for writing directly when nothing waits (`None` for other sinks and once
    /// closed).
    direct: Option<Arc<pipe::Sender>>,
}

/// Bytes to write, and whether a newline follows them.
struct Piece {
    bytes: Bytes,
    newline: bool,
}

impl Piece {
    fn len(&self) -> usize {
        self.bytes.len() + usize::from(self.newline)
    }
}

impl Clone for LineQueue {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        LineQueue {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for LineQueue {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.wake.notify_one();
        }
    }
}

impl LineQueue {
    /// A queue and the receiving end for the writer ([`write_lines`] or [`write_pipe`]).
    pub fn channel() -> (LineQueue, LineQueueRx) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: VecDeque::new(),
                busy: false,
                direct: None,
            }),
            queued: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            senders: AtomicUsize::new(1),
            wake: Notify::new(),
            drained: Notify::new(),
        });
        (
            LineQueue {
                shared: shared.clone(),
            },
            LineQueueRx { shared },
        )
    }

    /// Queues one line (without newline), or writes it at once to an idle pipe.
    pub fn push(&self, line: Bytes) -> Result<(), QueueClosed> {
        let shared = &self.shared;
        let mut state = shared.state.lock();
        if shared.closed.load(Ordering::Acquire) {
            return Err(QueueClosed);
        }
        let mut piece = Piece {
            bytes: line,
            newline: true,
        };
        if !state.busy
            && state.pending.is_empty()
            && let Some(pipe) = &state.direct
        {
            let slices = [IoSlice::new(&piece.bytes), IoSlice::new(b"\n")];
            match pipe.try_write_vectored(&slices) {
                Ok(n) if n == piece.len() => return Ok(()),
                // The rest goes to the writer, which waits for the pipe to drain.
                Ok(n) => piece = piece.rest(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                // A broken pipe: nothing more gets through; the writer ends too.
                Err(_) => {
                    shared.closed.store(true, Ordering::Release);
                    state.direct = None;
                    drop(state);
                    shared.wake.notify_one();
                    return Err(QueueClosed);
                }
            }
        }
        shared.queued.fetch_add(piece.len(), Ordering::Relaxed);
        state.pending.push_back(piece);
        drop(state);
        shared.wake.notify_one();
        Ok(())
    }

    pub fn queued_bytes(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Waits until fewer than `limit` bytes are queued; false if that takes longer than
    /// `within` (the server is not reading).
    pub async fn wait_room(&self, limit: usize, within: Duration) -> bool {
        if self.queued_bytes() < limit {
            return true;
        }
        tokio::time::timeout(within, async {
            loop {
                let drained = self.shared.drained.notified();
                if self.queued_bytes() < limit || self.is_closed() {
                    return;
                }
                drained.await;
            }
        })
        .await
        .is_ok()
    }
}

impl Piece {
    /// What is left after `n` bytes were written.
    fn rest(self, n: usize) -> Piece {
        if n < self.bytes.len() {
            Piece {
                bytes: self.bytes.slice(n..),
                newline: self.newline,
            }
        } else {
            Piece {
                bytes: Bytes::new(),
                newline: self.newline && n == self.bytes.len(),
            }
        }
    }
}

/// The writer's end of a [`LineQueue`].
pub struct LineQueueRx {
    shared: Arc<Shared>,
}

impl LineQueueRx {
    /// The next pieces to write, in order; `None` when the queue has ended (every sender gone)
    /// or `close` was cancelled.
    async fn next(&self, close: &CancellationToken) -> Option<VecDeque<Piece>> {
        let shared = &self.shared;
        loop {
            {
                let mut state = shared.state.lock();
                if !state.pending.is_empty() {
                    state.busy = true;
                    return Some(std::mem::take(&mut state.pending));
                }
                state.busy = false;
                if shared.senders.load(Ordering::Acquire) == 0
                    || shared.closed.load(Ordering::Acquire)
                {
                    return None;
                }
            }
            tokio::select! {
                biased;
                _ = close.cancelled() => return None,
                _ = shared.wake.notified() => {}
            }
        }
    }

    fn written(&self, len: usize) {
        self.shared.queued.fetch_sub(len, Ordering::Relaxed);
        self.shared.drained.notify_waiters();
    }

    /// Nothing more is written: senders are refused from now on.
    fn close(&self) {
        let mut state = self.shared.state.lock();
        self.shared.closed.store(true, Ordering::Release);
        state.direct = None;
        state.pending.clear();
        drop(state);
        self.shared.drained.notify_waiters();
    }
}

impl Drop for LineQueueRx {
    fn drop(&mut self) {
        self.close();
    }
}

/// Writes queued lines to `sink` (an in-memory pipe, any writer) until the queue ends or
/// `close` is cancelled, then closes the sink.
pub async fn write_lines(
    sink: impl AsyncWrite + Unpin,
    lines: LineQueueRx,
    close: CancellationToken,
    session: String,
) {
    // Small: thousands of idle sessions each hold one; larger writes bypass it.
    let mut out = tokio::io::BufWriter::with_capacity(8 * 1024, sink);
    while let Some(batch) = lines.next(&close).await {
        let mut written = 0;
        let mut result = Ok(());
        for piece in &batch {
            result = write_piece(&mut out, piece).await;
            if result.is_err() {
                break;
            }
            written += piece.len();
        }
        let result = result.and(out.flush().await);
        lines.written(written);
        if let Err(e) = result {
            tracing::debug!(session = %session, error = %e, "server input closed");
            lines.close();
            return;
        }
    }
    lines.close();
    // Closing the pipe is the polite request to exit.
    let _ = out.shutdown().await;
}

async fn write_piece<W: AsyncWriteExt + Unpin>(out: &mut W, piece: &Piece) -> std::io::Result<()> {
    out.write_all(&piece.bytes).await?;
    if piece.newline {
        out.write_all(b"\n").await?;
    }
    Ok(())
}

/// How senders reach a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// While the writer is idle, a sender writes its line itself: the shortest path for one
    /// client's requests.
    Direct,
    /// Always through the writer, which coalesces what many senders queued into one write: the
    /// better deal for a child shared by many sessions.
    Queued,
}

/// Writes queued lines to a pipe (a child's stdin) until the queue ends or `close` is
/// cancelled, then closes it.
pub async fn write_pipe(
    pipe: pipe::Sender,
    input: Input,
    lines: LineQueueRx,
    close: CancellationToken,
    session: String,
) {
    let pipe = Arc::new(pipe);
    if input == Input::Direct {
        lines.shared.state.lock().direct = Some(pipe.clone());
    }
    while let Some(mut batch) = lines.next(&close).await {
        let mut result = Ok(());
        while !batch.is_empty() && result.is_ok() {
            // A pipe that takes the bytes finishes the write; one that does not (the child
            // stopped reading) gives way to closing.
            result = tokio::select! {
                biased;
                r = write_some(&pipe, &mut batch) => r.map(|n| lines.written(n)),
                _ = close.cancelled() => Err(ErrorKind::Interrupted.into()),
            };
        }
        if let Err(e) = result {
            tracing::debug!(session = %session, error = %e, "child stdin closed");
            break;
        }
    }
    // Dropping the last handle on the pipe closes it: the polite request to exit.
    lines.close();
}

/// Writes as much of `batch` as the pipe takes in one `writev` once it is writable; returns the
/// bytes written and leaves the rest in `batch`.
async fn write_some(pipe: &pipe::Sender, batch: &mut VecDeque<Piece>) -> std::io::Result<usize> {
    loop {
        pipe.writable().await?;
        let mut slices = Vec::with_capacity(batch.len().min(512) * 2);
        for piece in batch.iter().take(512) {
            slices.push(IoSlice::new(&piece.bytes));
            if piece.newline {
                slices.push(IoSlice::new(b"\n"));
            }
        }
        match pipe.try_write_vectored(&slices) {
            Ok(n) => {
                let mut left = n;
                while let Some(front) = batch.front() {
                    if front.len() > left {
                        let rest = batch.pop_front().unwrap().rest(left);
                        batch.push_front(rest);
                        break;
                    }
                    left -= front.len();
                    batch.pop_front();
                }
                return Ok(n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A pipe pair: the sender for the queue, the reading end for the test.
    fn os_pipe() -> (pipe::Sender, pipe::Receiver) {
        pipe::pipe().unwrap()
    }

    async fn read_all(mut rx: pipe::Receiver) -> String {
        let mut out = vec![];
        rx.read_to_end(&mut out).await.unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn lines_arrive_in_order_and_the_pipe_closes_with_the_last_sender() {
        let (tx, rx) = os_pipe();
        let (queue, lines) = LineQueue::channel();
        let writer = tokio::spawn(write_pipe(
            tx,
            Input::Direct,
            lines,
            CancellationToken::new(),
            "t".into(),
        ));
        let reader = tokio::spawn(read_all(rx));
        let other = queue.clone();
        for i in 0..1000 {
            let q = if i % 2 == 0 { &queue } else { &other };
            q.push(Bytes::from(format!("{{\"n\":{i}}}"))).unwrap();
        }
        drop(queue);
        drop(other);
        writer.await.unwrap();
        let text = reader.await.unwrap();
        let expected: String = (0..1000).map(|i| format!("{{\"n\":{i}}}\n")).collect();
        assert_eq!(text, expected);
    }

    #[tokio::test]
    async fn a_full_pipe_queues_and_the_writer_finishes_partial_lines() {
        let (tx, mut rx) = os_pipe();
        let (queue, lines) = LineQueue::channel();
        let writer = tokio::spawn(write_pipe(
            tx,
            Input::Direct,
            lines,
            CancellationToken::new(),
            "t".into(),
        ));
        tokio::task::yield_now().await;
        // Far more than a pipe holds (64 KiB): some is written directly, the rest waits.
        let line = Bytes::from(vec![b'x'; 40_000]);
        for _ in 0..10 {
            queue.push(line.clone()).unwrap();
        }
        assert!(queue.queued_bytes() > 0, "a full pipe makes lines wait");
        let mut got = vec![];
        let mut buf = vec![0; 65536];
        while got.len() < 10 * 40_001 {
            let n = rx.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        let expected: Vec<u8> = (0..10)
            .flat_map(|_| line.iter().copied().chain([b'\n']))
            .collect();
        assert_eq!(got, expected);
        assert!(queue.wait_room(1, Duration::from_secs(5)).await);
        assert_eq!(queue.queued_bytes(), 0);
        drop(queue);
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_closed_reader_refuses_senders() {
        let (tx, rx) = os_pipe();
        let (queue, lines) = LineQueue::channel();
        let close = CancellationToken::new();
        let writer = tokio::spawn(write_pipe(
            tx,
            Input::Direct,
            lines,
            close.clone(),
            "t".into(),
        ));
        drop(rx);
        tokio::task::yield_now().await;
        // The first write meets the broken pipe (directly or in the writer).
        let mut refused = false;
        for _ in 0..100 {
            if queue.push(Bytes::from_static(b"{}")).is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(refused);
        assert!(queue.is_closed());
        close.cancel();
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn cancelling_closes_the_input_even_with_senders_left() {
        let (tx, rx) = os_pipe();
        let (queue, lines) = LineQueue::channel();
        let close = CancellationToken::new();
        let writer = tokio::spawn(write_pipe(
            tx,
            Input::Direct,
            lines,
            close.clone(),
            "t".into(),
        ));
        queue.push(Bytes::from_static(b"{\"a\":1}")).unwrap();
        close.cancel();
        writer.await.unwrap();
        // The pipe is closed (reading ends) though `queue` is still held; what was queued
        // may or may not have gone through first.
        let got = read_all(rx).await;
        assert!(got.is_empty() || got == "{\"a\":1}\n", "{got:?}");
        assert!(queue.is_closed());
        assert!(queue.push(Bytes::from_static(b"{}")).is_err());
    }

    #[tokio::test]
    async fn a_queued_pipe_gets_the_lines_in_order() {
        let (tx, rx) = os_pipe();
        let (queue, lines) = LineQueue::channel();
        let writer = tokio::spawn(write_pipe(
            tx,
            Input::Queued,
            lines,
            CancellationToken::new(),
            "t".into(),
        ));
        let reader = tokio::spawn(read_all(rx));
        for i in 0..300 {
            queue.push(Bytes::from(format!("{{\"n\":{i}}}"))).unwrap();
        }
        drop(queue);
        writer.await.unwrap();
        let expected: String = (0..300).map(|i| format!("{{\"n\":{i}}}\n")).collect();
        assert_eq!(reader.await.unwrap(), expected);
    }

    #[tokio::test]
    async fn any_writer_gets_the_lines_in_order() {
        let (ours, theirs) = tokio::io::duplex(64);
        let (queue, lines) = LineQueue::channel();
        let writer = tokio::spawn(write_lines(
            ours,
            lines,
            CancellationToken::new(),
            "t".into(),
        ));
        let reader = tokio::spawn(async move {
            let mut theirs = theirs;
            let mut out = String::new();
            theirs.read_to_string(&mut out).await.unwrap();
            out
        });
        for i in 0..200 {
            queue.push(Bytes::from(format!("[{i}]"))).unwrap();
        }
        drop(queue);
        writer.await.unwrap();
        let expected: String = (0..200).map(|i| format!("[{i}]\n")).collect();
        assert_eq!(reader.await.unwrap(), expected);
    }
}
