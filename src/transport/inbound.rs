//! The receiving side of an owner's links: the owner polls every socket
//! itself through its [`Inbound`] (no reader task and no channel per link:
//! that hop was the largest per-message cost after the kernel's), and link
//! tasks only report state changes and hand over each new connection's
//! receive half.

use super::{LinkEvent, LinkId};
use crate::logging::{hex, RateLimit};
use futures::StreamExt;
use std::task::{Context, Poll};
use tokio::sync::mpsc;
use zerorpc_zeromq::{SocketRecv, ZmqMessage};

/// What a link's task tells its owner's [`Inbound`].
pub(super) enum Report {
    Event(LinkEvent),
    /// The socket to read from now (`None`: the connection is gone).
    Reader(LinkId, Option<Reader>),
}

/// A socket's receive half as a stream of messages.
pub(super) type Reader = std::pin::Pin<Box<dyn futures::Stream<Item = ZmqMessage> + Send>>;

/// Everything an owner receives from its links. The owner polls the
/// sockets itself through this (saving a task and a channel hop per
/// message, the largest per-message cost after the kernel's); link tasks
/// only report state changes (`Up`, `Down`, `PeerGone`) and hand over each
/// new connection's socket.
pub(crate) struct Inbound {
    pub(super) reports: mpsc::Receiver<Report>,
    pub(super) reports_open: bool,
    pub(super) readers: Vec<Option<Reader>>,
    /// Links the owner removed: what they still report is dropped.
    pub(super) forgotten: Vec<bool>,
    /// The link read first next time (so one busy link cannot starve others).
    pub(super) next: usize,
    /// Readers installed so far (to tell whether handling reports did).
    pub(super) installed: usize,
}

impl Inbound {
    /// The next event; `None` once every link is gone.
    pub(crate) async fn recv(&mut self) -> Option<LinkEvent> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Stop reading link `id` (the owner closed it), now and for good.
    pub(crate) fn forget(&mut self, id: LinkId) {
        if self.forgotten.len() <= id {
            self.forgotten.resize(id + 1, false);
        }
        self.forgotten[id] = true;
        if let Some(r) = self.readers.get_mut(id) {
            *r = None;
        }
    }

    fn is_forgotten(&self, id: LinkId) -> bool {
        self.forgotten.get(id).copied().unwrap_or(false)
    }

    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<LinkEvent>> {
        // State changes first: a new connection's reader is installed
        // before its messages are read, after the `Up` that announced it.
        // Polling the reports costs as much as a message's decoding, so
        // while messages flow they are only looked at; they are polled
        // (and their wake-up registered) before this waits.
        let looked = self.reports_open && !self.reports.is_empty();
        if looked {
            if let Some(ev) = self.take_reports(cx) {
                return Poll::Ready(Some(ev));
            }
        }
        if let Some(ev) = self.read(cx) {
            return Poll::Ready(Some(ev));
        }
        if self.reports_open && !looked {
            let readers = self.installed;
            if let Some(ev) = self.take_reports(cx) {
                return Poll::Ready(Some(ev));
            }
            // (A reader it installed is polled before waiting.)
            if self.installed != readers {
                if let Some(ev) = self.read(cx) {
                    return Poll::Ready(Some(ev));
                }
            }
        }
        if !self.reports_open && self.readers.iter().all(Option::is_none) {
            return Poll::Ready(None);
        }
        Poll::Pending
    }

    /// Handle the links' reports until one is an event for the owner, or
    /// none is left (then a new report wakes `cx`).
    fn take_reports(&mut self, cx: &mut Context<'_>) -> Option<LinkEvent> {
        while self.reports_open {
            match self.reports.poll_recv(cx) {
                Poll::Ready(Some(Report::Event(ev))) => return Some(ev),
                Poll::Ready(Some(Report::Reader(id, _))) if self.is_forgotten(id) => {}
                Poll::Ready(Some(Report::Reader(id, reader))) => {
                    if self.readers.len() <= id {
                        self.readers.resize_with(id + 1, || None);
                    }
                    self.readers[id] = reader;
                    self.installed += 1;
                }
                Poll::Ready(None) => self.reports_open = false,
                Poll::Pending => break,
            }
        }
        None
    }

    /// The next message of any socket, each tried in turn from where the
    /// last one was found (so one busy link cannot starve the others).
    fn read(&mut self, cx: &mut Context<'_>) -> Option<LinkEvent> {
        let n = self.readers.len();
        for i in 0..n {
            let id = (self.next + i) % n;
            let Some(reader) = self.readers[id].as_mut() else {
                continue;
            };
            match reader.poll_next_unpin(cx) {
                Poll::Ready(Some(msg)) => {
                    self.next = id + 1;
                    return Some(LinkEvent::Message(id, msg));
                }
                Poll::Ready(None) => self.readers[id] = None,
                Poll::Pending => {}
            }
        }
        None
    }
}

/// A socket's receive half as a [`Reader`]: receive errors are logged and
/// skipped (one peer failing never stops the others), and the stream ends
/// when the socket is closed.
pub(super) fn reader<R: SocketRecv + Send + 'static>(rx: R) -> Reader {
    Box::pin(futures::stream::unfold(
        (rx, RateLimit::default()),
        |(mut rx, mut warned)| async move {
            loop {
                match received(rx.recv().await, &mut warned) {
                    Received::Message(msg) => return Some((msg, (rx, warned))),
                    Received::End => return None,
                    Received::Skip => {}
                }
            }
        },
    ))
}

/// A receive half with a poll function (the vendored patch's `poll_recv`).
pub(super) trait PollRecv: Send + 'static {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<zerorpc_zeromq::ZmqResult<ZmqMessage>>;
}

impl PollRecv for zerorpc_zeromq::DealerRecvHalf {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<zerorpc_zeromq::ZmqResult<ZmqMessage>> {
        zerorpc_zeromq::DealerRecvHalf::poll_recv(self, cx)
    }
}

impl PollRecv for zerorpc_zeromq::RouterRecvHalf {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<zerorpc_zeromq::ZmqResult<ZmqMessage>> {
        zerorpc_zeromq::RouterRecvHalf::poll_recv(self, cx)
    }
}

/// [`reader`], polled in place: no boxed future per message.
pub(super) fn polled_reader<R: PollRecv>(mut rx: R) -> Reader {
    let mut warned = RateLimit::default();
    Box::pin(futures::stream::poll_fn(move |cx| loop {
        match received(std::task::ready!(rx.poll_recv(cx)), &mut warned) {
            Received::Message(msg) => return Poll::Ready(Some(msg)),
            Received::End => return Poll::Ready(None),
            Received::Skip => {}
        }
    }))
}

/// What a receive result means to a [`Reader`].
enum Received {
    Message(ZmqMessage),
    /// The socket is closed.
    End,
    /// An error, logged here; read on.
    Skip,
}

/// What a receive result means to a [`Reader`]; errors are logged here, at
/// most once a second per socket (a peer that reconnects to send bad data
/// again and again cannot flood the log).
fn received(r: zerorpc_zeromq::ZmqResult<ZmqMessage>, warned: &mut RateLimit) -> Received {
    match r {
        Ok(msg) => return Received::Message(msg),
        Err(zerorpc_zeromq::ZmqError::NoMessage) => return Received::End,
        // A ROUTER names the peer it dropped.
        Err(zerorpc_zeromq::ZmqError::PeerFailed(peer, why)) => warned.warn(
            || tracing::warn!(peer = %hex(&peer), error = %why, "dropped a peer that sent bad data"),
        ),
        // A peer's connection broke (reset, closed mid-frame): not bad
        // data; the disconnect is reported on its own.
        Err(e) if io_failure(&e) => tracing::debug!(error = %e, "a peer's connection failed"),
        // One peer broke the protocol (or went over the size limit);
        // zeromq has dropped it. The others carry on.
        Err(e) => warned.warn(|| tracing::warn!(error = %e, "dropped a peer that sent bad data")),
    }
    Received::Skip
}

/// Whether a receive error is the connection failing (an I/O error
/// somewhere in its sources) rather than the peer misbehaving.
pub(super) fn io_failure(e: &zerorpc_zeromq::ZmqError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<std::io::Error>() {
            return true;
        }
        source = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn describe(ev: Poll<Option<LinkEvent>>) -> String {
        match ev {
            Poll::Ready(Some(LinkEvent::Up(id))) => format!("up {id}"),
            Poll::Ready(Some(LinkEvent::Down(id))) => format!("down {id}"),
            Poll::Ready(Some(LinkEvent::Message(id, m))) => {
                format!("{id}:{}", String::from_utf8_lossy(m.get(0).unwrap()))
            }
            Poll::Ready(Some(_)) => "peer".into(),
            Poll::Ready(None) => "end".into(),
            Poll::Pending => "pending".into(),
        }
    }

    /// Reports are only looked at while messages flow, and polled before
    /// waiting: a report that comes between two messages is handled before
    /// the second, and one that comes while the owner waits wakes it.
    #[test]
    fn reports_keep_their_place_among_messages_and_wake_a_waiting_owner() {
        let (tx, rx) = mpsc::channel(8);
        let mut inbound = Inbound {
            reports: rx,
            reports_open: true,
            readers: Vec::new(),
            forgotten: Vec::new(),
            next: 0,
            installed: 0,
        };
        let (msgs_tx, msgs_rx) = futures::channel::mpsc::unbounded::<ZmqMessage>();
        let reader: Reader = Box::pin(msgs_rx);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);

        tx.try_send(Report::Event(LinkEvent::Up(0))).ok().unwrap();
        tx.try_send(Report::Reader(0, Some(reader))).ok().unwrap();
        msgs_tx.unbounded_send(ZmqMessage::from("a")).unwrap();
        msgs_tx.unbounded_send(ZmqMessage::from("b")).unwrap();
        assert_eq!(describe(inbound.poll_recv(&mut cx)), "up 0");
        assert_eq!(describe(inbound.poll_recv(&mut cx)), "0:a");
        tx.try_send(Report::Event(LinkEvent::Down(0))).ok().unwrap();
        assert_eq!(describe(inbound.poll_recv(&mut cx)), "down 0");
        assert_eq!(describe(inbound.poll_recv(&mut cx)), "0:b");
        assert_eq!(describe(inbound.poll_recv(&mut cx)), "pending");

        let before = count.0.load(Ordering::SeqCst);
        tx.try_send(Report::Event(LinkEvent::Up(0))).ok().unwrap();
        assert!(
            count.0.load(Ordering::SeqCst) > before,
            "a report wakes the owner"
        );
        assert_eq!(describe(inbound.poll_recv(&mut cx)), "up 0");
        assert_eq!(describe(inbound.poll_recv(&mut cx)), "pending");
        let before = count.0.load(Ordering::SeqCst);
        msgs_tx.unbounded_send(ZmqMessage::from("c")).unwrap();
        assert!(
            count.0.load(Ordering::SeqCst) > before,
            "a message wakes the owner"
        );
        assert_eq!(describe(inbound.poll_recv(&mut cx)), "0:c");

        drop(msgs_tx);
        drop(tx);
        assert_eq!(describe(inbound.poll_recv(&mut cx)), "end");
    }
}
