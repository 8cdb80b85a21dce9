//! Connection deadlines, ordered by time: the poll timeout is the earliest.
//!
//! Each connection keeps its true deadline itself and at most one entry
//! here. Moving a deadline later (every read or write does) leaves the
//! entry alone: when it fires, the owner re-arms it at the true deadline.
//! Only a move earlier touches the set, so the hot path costs nothing.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Timers {
    set: BTreeSet<(Instant, usize)>,
}

/// A connection's side of its timer: the deadline it wants and the entry
/// it holds in [`Timers`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Deadline {
    pub want: Option<Instant>,
    armed: Option<Instant>,
}

impl Timers {
    /// Makes the set agree with `deadline` for connection `key`.
    pub fn sync(&mut self, key: usize, deadline: &mut Deadline) {
        match (deadline.want, deadline.armed) {
            (Some(want), Some(armed)) if want >= armed => {}
            (want, armed) => {
                if let Some(armed) = armed {
                    self.set.remove(&(armed, key));
                }
                if let Some(want) = want {
                    self.set.insert((want, key));
                }
                deadline.armed = want;
            }
        }
    }

    /// Forgets connection `key` (it is closing).
    pub fn cancel(&mut self, key: usize, deadline: &mut Deadline) {
        if let Some(armed) = deadline.armed.take() {
            self.set.remove(&(armed, key));
        }
    }

    /// How long the poll may sleep.
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        self.set
            .first()
            .map(|&(at, _)| at.saturating_duration_since(now))
    }

    /// Removes and returns the key of the earliest entry due at `now`. The
    /// caller marks the connection's [`Deadline`] as disarmed with
    /// [`Deadline::fired`], then checks whether it is really due.
    pub fn pop_due(&mut self, now: Instant) -> Option<usize> {
        match self.set.first() {
            Some(&(at, _)) if at <= now => self.set.pop_first().map(|(_, key)| key),
            _ => None,
        }
    }
}

impl Deadline {
    pub fn fired(&mut self) {
        self.armed = None;
    }

    pub fn is_due(&self, now: Instant) -> bool {
        self.want.is_some_and(|at| at <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_moves_are_lazy_and_earlier_moves_replace() {
        let mut timers = Timers::default();
        let t0 = Instant::now();
        let mut d = Deadline {
            want: Some(t0 + Duration::from_secs(10)),
            ..Deadline::default()
        };
        timers.sync(1, &mut d);
        d.want = Some(t0 + Duration::from_secs(20));
        timers.sync(1, &mut d);
        assert_eq!(timers.set.len(), 1);
        assert_eq!(timers.timeout(t0), Some(Duration::from_secs(10)));
        d.want = Some(t0 + Duration::from_secs(5));
        timers.sync(1, &mut d);
        assert_eq!(timers.set.len(), 1);
        assert_eq!(timers.timeout(t0), Some(Duration::from_secs(5)));
        assert_eq!(timers.pop_due(t0), None);
        assert_eq!(timers.pop_due(t0 + Duration::from_secs(6)), Some(1));
        d.fired();
        assert!(d.is_due(t0 + Duration::from_secs(6)));
        timers.cancel(1, &mut d);
        assert_eq!(timers.timeout(t0), None);
    }
}
