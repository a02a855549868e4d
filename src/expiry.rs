//! Expiry: a [`Clock`] to read the time from and an [`Expiry`] per vector.
//!
//! Times are unix milliseconds (`u64`). The index will read "now" from a `Clock` it is given, so
//! tests drive expiry with a [`ManualClock`] instead of sleeping.
//!
//! ```
//! use hnsw_batch::expiry::{Clock, Expiry, ManualClock};
//! use std::time::Duration;
//!
//! let clock = ManualClock::new(1_000);
//! let e = Expiry::after(&clock, Duration::from_secs(60));
//! assert_eq!(e, Expiry::At(61_000));
//! assert!(!e.is_expired(clock.now_ms()));
//! clock.advance(Duration::from_secs(60));
//! assert!(e.is_expired(clock.now_ms()));
//! assert!(!Expiry::Never.is_expired(u64::MAX));
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time in unix milliseconds.
pub trait Clock: Send + Sync {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    fn now_ms(&self) -> u64;
}

/// The system's wall clock. A time before 1970 reads as 0; one past `u64::MAX` ms (in 584
/// million years) as `u64::MAX`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A clock that moves only when told: for deterministic tests. Shared by reference across
/// threads (`set` and `advance` take `&self`).
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    /// A clock reading `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        ManualClock { now: AtomicU64::new(start_ms) }
    }

    /// Sets the time (it may go backwards, as wall clocks sometimes do).
    pub fn set(&self, now_ms: u64) {
        self.now.store(now_ms, Ordering::SeqCst);
    }

    /// Moves the time forward by `by` (saturating at `u64::MAX`).
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        // `fetch_update` with a closure that always returns Some cannot fail.
        let _ = self.now.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| Some(t.saturating_add(ms)));
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
}

/// When a vector expires: never, or at a unix time in milliseconds.
///
/// A vector is expired from its expiry time on (`now >= at`), so `Expiry::At(now)` is already
/// expired: a time-to-live of zero means "gone at once", not "live for one more millisecond".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Expiry {
    /// Never expires.
    #[default]
    Never,
    /// Expires at this unix time in milliseconds.
    At(u64),
}

impl Expiry {
    /// Expires `ttl` after `clock`'s now (saturating: a huge `ttl` is "at `u64::MAX`").
    pub fn after(clock: &impl Clock, ttl: Duration) -> Expiry {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        Expiry::At(clock.now_ms().saturating_add(ms))
    }

    /// From an optional unix-ms time, as stored (`None`: never).
    pub fn from_option(at: Option<u64>) -> Expiry {
        at.map_or(Expiry::Never, Expiry::At)
    }

    /// The unix-ms time, if any.
    pub fn at(self) -> Option<u64> {
        match self {
            Expiry::Never => None,
            Expiry::At(t) => Some(t),
        }
    }

    /// Whether it has expired at `now_ms`.
    pub fn is_expired(self, now_ms: u64) -> bool {
        matches!(self, Expiry::At(t) if now_ms >= t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_boundary_is_inclusive() {
        assert!(!Expiry::At(10).is_expired(9));
        assert!(Expiry::At(10).is_expired(10));
        assert!(Expiry::At(0).is_expired(0));
    }

    #[test]
    fn manual_clock_saturates_and_can_go_back() {
        let c = ManualClock::new(u64::MAX - 5);
        c.advance(Duration::from_secs(1));
        assert_eq!(c.now_ms(), u64::MAX);
        c.set(7);
        assert_eq!(c.now_ms(), 7);
        assert_eq!(Expiry::after(&c, Duration::MAX), Expiry::At(u64::MAX));
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now_ms() > 1_577_836_800_000);
    }

    #[test]
    fn option_round_trip() {
        for e in [Expiry::Never, Expiry::At(0), Expiry::At(u64::MAX)] {
            assert_eq!(Expiry::from_option(e.at()), e);
        }
    }
}
