//! How often one address may start a sign-in at the identity provider (`/auth/login`, a
//! reviewer's `/r/{token}/sign-in`). Each start stores an attempt and, when the provider's
//! metadata is not cached, asks the provider: an address that starts more than
//! `auth.sign_ins_per_minute` gets 429 with `Retry-After`, and nothing is stored or asked.
//! Counted per connecting address (behind a reverse proxy, that is the proxy's) with
//! governor's cell-rate algorithm, which allows the whole minute's count at once and then one
//! more each 1/N minute; time is the injected clock's.

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::ops::Add;

use governor::clock::Reference;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::clock::SharedClock;

/// Addresses remembered before the ones that are back to a full allowance are forgotten.
const ADDRESSES_KEPT: usize = 10_000;

/// The injected clock as governor reads it.
#[derive(Clone)]
struct InjectedClock(SharedClock);

/// Nanoseconds since the Unix epoch on the injected clock.
#[derive(Debug, Copy, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct At(u64);

impl Add<Nanos> for At {
    type Output = At;

    fn add(self, other: Nanos) -> At {
        At(self.0.saturating_add(other.as_u64()))
    }
}

impl Reference for At {
    fn duration_since(&self, earlier: Self) -> Nanos {
        Nanos::from(self.0.saturating_sub(earlier.0))
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        At(self.0.saturating_sub(duration.as_u64()))
    }
}

impl governor::clock::Clock for InjectedClock {
    type Instant = At;

    fn now(&self) -> At {
        let nanos = self.0.now().timestamp_nanos_opt().unwrap_or(0);
        At(u64::try_from(nanos).unwrap_or(0))
    }
}

/// Sign-in starts per address.
pub struct SignInLimiter {
    limiter: RateLimiter<IpAddr, HashMapStateStore<IpAddr>, InjectedClock, NoOpMiddleware<At>>,
    clock: InjectedClock,
}

impl SignInLimiter {
    /// At most `per_minute` starts per address and minute (at least 1).
    pub fn new(per_minute: u32, clock: SharedClock) -> SignInLimiter {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        let clock = InjectedClock(clock);
        SignInLimiter {
            limiter: RateLimiter::new(quota, HashMapStateStore::default(), clock.clone()),
            clock,
        }
    }

    /// Counts a start from `address`: Ok when allowed, else the whole seconds to wait.
    pub fn check(&self, address: Option<IpAddr>) -> Result<(), u64> {
        if self.limiter.len() > ADDRESSES_KEPT {
            self.limiter.retain_recent();
        }
        let key = address.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        self.limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&self.clock));
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use chrono::{DateTime, Duration, TimeZone, Utc};

    use super::*;

    struct Settable(Mutex<DateTime<Utc>>);

    impl crate::clock::Clock for Settable {
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().unwrap()
        }
    }

    #[test]
    fn an_address_gets_its_allowance_then_waits_and_others_are_not_held_up() {
        let start = Utc.with_ymd_and_hms(2026, 11, 27, 9, 0, 0).unwrap();
        let clock = Arc::new(Settable(Mutex::new(start)));
        let limiter = SignInLimiter::new(3, clock.clone());
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..3 {
            assert_eq!(limiter.check(Some(a)), Ok(()));
        }
        assert_eq!(limiter.check(Some(a)), Err(20), "one more each 20 s");
        assert_eq!(
            limiter.check(Some(b)),
            Ok(()),
            "another address is not held up"
        );
        *clock.0.lock().unwrap() = start + Duration::seconds(20);
        assert_eq!(limiter.check(Some(a)), Ok(()));
        assert!(limiter.check(Some(a)).is_err());
    }
}
