//! Open channels: one per request running, keyed by the client (link and
//! routing identity) and the request's id; and the events a client sends on
//! one (`_zpc_hb`, `_zpc_more`, its stream's items; anything else counts
//! as a sign of life).

use crate::context::Context;
use crate::error::ServiceError;
use crate::protocol::heartbeat::Beat;
use crate::protocol::msgpack;
use crate::service::Reply;
use crate::telemetry::{MethodMetrics, Outcome};
use crate::transport::LinkId;
use bytes::Bytes;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// Never hold more credit than this per channel, whatever a peer grants.
/// zerorpc readers keep at most about 100 events granted (Python adds
/// `100 - reserved`, node sets 100 − queued); a client granting millions
/// while not reading only makes the producer run ahead of it.
pub(super) const MAX_CREDIT: usize = 1000;

/// Which channel: the client, and its request's id. Ids are compared by
/// what they hold, whatever their msgpack type and length width (a peer
/// that echoes a bin id as a str, as a Go implementation does, still
/// reaches its channel); every event the server sends carries the id as it
/// came (`id`), byte for byte.
#[derive(Clone, Debug)]
pub(super) struct ChanKey {
    pub(super) link: LinkId,
    pub(super) identity: Bytes,
    /// The request's `message_id`, raw msgpack, as it came.
    pub(super) id: Bytes,
}

impl ChanKey {
    /// What the id is compared by: the contents of a str or bin, or the
    /// whole raw value of another type.
    fn held(&self) -> (bool, &[u8]) {
        msgpack::id_content(&self.id)
    }
}

impl PartialEq for ChanKey {
    fn eq(&self, other: &Self) -> bool {
        self.link == other.link && self.identity == other.identity && self.held() == other.held()
    }
}

impl Eq for ChanKey {}

impl std::hash::Hash for ChanKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.link.hash(state);
        self.identity.hash(state);
        self.held().hash(state);
    }
}

/// A request, running or waiting for a pool slot.
pub(super) struct Chan {
    /// When it arrived, and its method's metrics.
    pub(super) started: Instant,
    pub(super) metrics: Arc<MethodMetrics>,
    /// Its tracing span (disabled unless a subscriber wants it).
    pub(super) span: tracing::Span,
    /// When its caller stops waiting (its key in the core's deadlines),
    /// until its reply or its stream's first item is sent.
    pub(super) deadline: Option<(Instant, u64)>,
    /// The frames before the delimiter (identity, envelope), for every
    /// event sent on the channel.
    pub(super) route: Vec<Bytes>,
    pub(super) run: Run,
    pub(super) beat: Beat,
    /// How many more data events the caller has room for.
    pub(super) credit: Arc<Semaphore>,
    /// A v1 caller (no `v` ≥ 2): errors are sent in its shape.
    pub(super) legacy: bool,
    /// It was admitted by the pool (introspection is not).
    pub(super) pooled: bool,
    /// The caller's stream of items, for a client-stream or bidirectional
    /// call (PROTOCOL.md §9.1).
    pub(super) input: Option<Input>,
}

/// What the core keeps of a caller's stream of items.
pub(super) struct Input {
    /// Where its items go (`None` once the caller ended its stream).
    pub(super) tx: Option<mpsc::UnboundedSender<Bytes>>,
    /// Items the caller may still send (granted, not yet arrived).
    pub(super) credit: usize,
    /// Bytes of items queued for the handler, not yet read.
    pub(super) ahead: Arc<AtomicUsize>,
}

/// The most bytes of items a caller may have queued unread by the handler
/// (one item is always taken, whatever its size): the handler's credit
/// keeps a caller well under it.
pub(super) const INPUT_MAX_AHEAD: usize = 64 << 20;

/// Where a request is.
pub(super) enum Run {
    /// Waiting for a pool slot, its handler not yet polled.
    Waiting(BoxFuture<'static, Result<Reply, ServiceError>>, Context),
    /// In its own task.
    Running(AbortHandle),
    /// Moving from waiting to running (only while the core starts it).
    Starting,
}

impl Run {
    pub(super) fn is_running(&self) -> bool {
        matches!(self, Run::Running(_))
    }

    /// Stop the task, if it runs.
    pub(super) fn abort(&self) {
        if let Run::Running(task) = self {
            task.abort();
        }
    }
}

/// An event a request task wants sent on its channel.
pub(super) struct Out {
    pub(super) key: ChanKey,
    pub(super) payload: Bytes,
    /// OK, ERR or STREAM_DONE: the channel closes after it, with this
    /// outcome.
    pub(super) last: Option<Outcome>,
}

/// Every open channel.
#[derive(Default)]
pub(super) struct Chans(HashMap<ChanKey, Chan>);

impl Chans {
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn get_mut(&mut self, key: &ChanKey) -> Option<&mut Chan> {
        self.0.get_mut(key)
    }

    pub(super) fn contains(&self, key: &ChanKey) -> bool {
        // (Most requests find no request running: skip hashing then.)
        !self.0.is_empty() && self.0.contains_key(key)
    }

    pub(super) fn insert(&mut self, key: ChanKey, chan: Chan) {
        self.0.insert(key, chan);
    }

    pub(super) fn remove(&mut self, key: &ChanKey) -> Option<Chan> {
        self.0.remove(key)
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (&ChanKey, &mut Chan)> {
        self.0.iter_mut()
    }

    /// The channels whose key matches.
    pub(super) fn keys_where(&self, pred: impl Fn(&ChanKey) -> bool) -> Vec<ChanKey> {
        self.0.keys().filter(|k| pred(k)).cloned().collect()
    }
}

/// The count of a `_zpc_more [n]` event, if it is a positive integer.
pub(super) fn more_credit(args: &Bytes) -> Option<usize> {
    let n = msgpack::read_int(&msgpack::first_item(args)?)?;
    usize::try_from(n).ok().filter(|&n| n > 0)
}
