//! One-way events: fire-and-forget to one of many workers, or to everyone.
//!
//! | zrpc | zerorpc-python | OpenStack RPC | ZeroMQ |
//! |---|---|---|---|
//! | [`Pusher::push`] → [`Puller`] | `Pusher` → `Puller` | `cast` (one worker takes it) | PUSH → PULL |
//! | [`Publisher::publish`] → [`Subscriber`] | `Publisher` → `Subscriber` | `fanout_cast` (every listener) | PUB → SUB |
//! | [`Notifier::notify`] → [`NotificationListener`] | `Publisher` → `Subscriber` (reads them) | `Notifier` → notification listener | PUB → SUB, filtered at the PUB |
//!
//! An event is one frame, `[{message_id, v: 3}, method, [args...]]`, with no
//! `response_to`, no reply, no heartbeat and no flow control (a
//! notification puts a topic frame before it, for the listeners'
//! subscriptions). The receiving
//! side dispatches it into an ordinary [`Service`](crate::Service); a failing or unknown
//! method is logged there and never reaches the sender.
//!
//! Delivery is at most once:
//! - a [`Pusher`] holds events while no puller is connected (up to
//!   [`MAX_WAITING`]) and hands each to one connected puller, round-robin;
//!   [`Pusher::close`] waits for held events and says how many were lost;
//! - a [`Publisher`] drops events while nobody is subscribed, and a new
//!   subscriber only receives events sent after its subscription reached the
//!   publisher (ZeroMQ's "slow joiner"): publish after
//!   [`Publisher::wait_for_subscriber`], or design for loss.
//!
//! | file | concept |
//! |---|---|
//! | `sender` | [`Pusher`] and [`Publisher`]: the core task that holds and hands out events |
//! | `receiver` | [`Puller`] and [`Subscriber`]: a [`Receiver`] dispatching into a service, its topics and filter |
//! | `notify` | [`Notifier`], [`NotificationListener`], [`Priority`]: oslo's notifications on PUB/SUB |

mod notify;
mod receiver;
mod sender;

pub use notify::{
    ListenerBuilder, NotificationListener, Notifier, NotifierBuilder, ParsePriorityError, Priority,
};
pub use receiver::{Puller, Receiver, ReceiverBuilder, Subscriber, DEFAULT_RECEIVER_POOL};
pub use sender::{Publisher, Pusher, SenderBuilder, MAX_WAITING};
