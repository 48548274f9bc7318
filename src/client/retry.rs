//! What a caller may allow to be sent twice.
//!
//! A call lost with its server (the connection closed, or the server's
//! heartbeats lapsed before it answered) fails with
//! [`Error::LostRemote`](crate::Error::LostRemote): the server may have run
//! it, and zrpc cannot know whether running it twice is harmless. A caller
//! who knows it is (the call is idempotent) gives a [`Retry`], and such a
//! call is sent again, to another server when there is one, after a
//! backoff. Nothing else is ever retried: not a timeout (the call's timeout
//! bounds all its attempts together), not an error the server returned, not
//! a stream that has started.

use std::time::Duration;

/// The retry policy of a call: how many attempts in all, and the wait
/// before the second (doubled for each later one, at most 5 s).
///
/// ```
/// use std::time::Duration;
/// use zerorpc::{CallOptions, Retry};
/// let opts = CallOptions::default().retry(Retry::attempts(3).backoff(Duration::from_millis(50)));
/// # let _ = opts;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, the first included (1: never retried).
    pub attempts: u32,
    /// The wait before the second attempt.
    pub backoff: Duration,
}

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Retry {
    /// Up to `n` attempts in all, the first included, with a 100 ms backoff.
    pub fn attempts(n: u32) -> Self {
        Retry {
            attempts: n.max(1),
            backoff: Duration::from_millis(100),
        }
    }

    /// The wait before the second attempt (doubled for each later one).
    pub fn backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    /// The wait after attempt number `made` (1 for the first) failed.
    pub(crate) fn backoff_after(&self, made: u32) -> Duration {
        let doublings = made.saturating_sub(1).min(16);
        self.backoff
            .saturating_mul(1 << doublings)
            .min(MAX_BACKOFF.max(self.backoff))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let r = Retry::attempts(10).backoff(Duration::from_millis(100));
        assert_eq!(r.backoff_after(1), Duration::from_millis(100));
        assert_eq!(r.backoff_after(2), Duration::from_millis(200));
        assert_eq!(r.backoff_after(3), Duration::from_millis(400));
        assert_eq!(r.backoff_after(9), Duration::from_secs(5));
        assert_eq!(Retry::attempts(0).attempts, 1);
    }
}
