//! Pacing of the outbox (`mail.rate_per_minute`): each send takes the next free slot, slots
//! one interval apart, so an instance never sends faster than the rate, and sends at once
//! while it is below it (an idle spell earns no burst).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Send slots shared by the clones of one worker.
#[derive(Debug, Clone, Default)]
pub struct Pacer {
    interval: Option<Duration>,
    next: Arc<Mutex<Option<Instant>>>,
}

impl Pacer {
    /// Slots `60 / rate_per_minute` seconds apart; none when the rate is 0.
    pub fn per_minute(rate_per_minute: u32) -> Pacer {
        Pacer {
            interval: (rate_per_minute > 0)
                .then(|| Duration::from_secs_f64(60.0 / f64::from(rate_per_minute))),
            next: Arc::default(),
        }
    }

    /// The slot of the next send asked for at `now`, and reserves it.
    pub fn reserve(&self, now: Instant) -> Instant {
        let Some(interval) = self.interval else {
            return now;
        };
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let slot = next.map_or(now, |n| n.max(now));
        *next = Some(slot + interval);
        slot
    }

    /// Waits for the next slot.
    pub async fn wait(&self) {
        if self.interval.is_some() {
            tokio::time::sleep_until(self.reserve(Instant::now())).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_take_slots_one_interval_apart_and_an_idle_spell_earns_no_burst() {
        let pacer = Pacer::per_minute(120);
        let start = Instant::now();
        let slots: Vec<Duration> = (0..3).map(|_| pacer.reserve(start) - start).collect();
        assert_eq!(
            slots,
            vec![
                Duration::ZERO,
                Duration::from_millis(500),
                Duration::from_secs(1)
            ]
        );
        // Long after: the next send goes at once, the one after it half a second later.
        let later = start + Duration::from_secs(60);
        assert_eq!(pacer.reserve(later), later);
        assert_eq!(pacer.reserve(later), later + Duration::from_millis(500));
        let unpaced = Pacer::per_minute(0);
        assert_eq!(unpaced.reserve(start), start);
        assert_eq!(unpaced.reserve(start), start);
    }
}
