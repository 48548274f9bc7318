//! One shape of shutdown for everything that runs (server, receiver,
//! pusher, publisher): `close(grace)` hands its owner's core task a
//! [`Stop`], waits until the task has stopped, and reports what the grace
//! period could not finish as [`Error::Unfinished`].

use crate::error::Error;
use std::time::Duration;
use tokio::sync::oneshot;

/// A request to stop: finish work for up to `grace`, then say how much was
/// cut short.
pub(crate) struct Stop {
    pub(crate) grace: Duration,
    done: oneshot::Sender<usize>,
}

impl Stop {
    /// The task has stopped; `unfinished` pieces of work were cut short.
    pub(crate) fn finish(self, unfinished: usize) {
        let _ = self.done.send(unfinished);
    }
}

/// Ask a core task to stop (`send` delivers the [`Stop`]; false when the
/// task is already gone) and wait for it. `what` names the work that can be
/// cut short, e.g. `requests cancelled`.
pub(crate) async fn close(
    grace: Duration,
    what: &'static str,
    send: impl FnOnce(Stop) -> bool,
) -> Result<(), Error> {
    let (done, wait) = oneshot::channel();
    if !send(Stop { grace, done }) {
        return Ok(());
    }
    match wait.await {
        Ok(0) | Err(_) => Ok(()),
        Ok(count) => Err(Error::Unfinished { count, what, grace }),
    }
}
