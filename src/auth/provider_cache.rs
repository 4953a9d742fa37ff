//! The staff identity provider, discovered once and kept for `PROVIDER_TTL`: a sign-in start
//! and its callback no longer each fetch the provider's metadata and keys, so a burst of
//! sign-ins costs the provider nothing and a slow provider slows only the first. A failed
//! discovery is not kept (the next sign-in tries again); after `PROVIDER_TTL` the metadata
//! and signing keys are fetched again, so a provider's key rotation is picked up.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

use crate::auth::staff_sign_in::{Provider, discover};
use crate::config::StaffOidcConfig;
use crate::error::Result;

/// How long discovered metadata and keys are used before they are fetched again.
pub const PROVIDER_TTL: Duration = Duration::minutes(10);

/// One discovered provider, and when it was discovered.
#[derive(Default)]
pub struct ProviderCache {
    slot: Mutex<Option<(DateTime<Utc>, Arc<Provider>)>>,
}

impl ProviderCache {
    /// The provider discovered within `PROVIDER_TTL` of `now`, or a fresh discovery (blocking
    /// HTTP; call it off the async runtime).
    pub fn get(
        &self,
        now: DateTime<Utc>,
        config: &StaffOidcConfig,
        redirect_uri: &str,
    ) -> Result<Arc<Provider>> {
        if let Some((at, provider)) = self.slot.lock().map_or(None, |slot| slot.clone())
            && now >= at
            && now - at < PROVIDER_TTL
        {
            return Ok(provider);
        }
        let provider = Arc::new(discover(config, redirect_uri)?);
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some((now, provider.clone()));
        }
        Ok(provider)
    }
}
