//! The directory: a versioned graph of who has what, per source. People, groups, direct
//! memberships and effective accesses are each stored as versions valid over a range of sync
//! runs, keyed by the directory's stable ids, so an unchanged sync writes nothing and "the
//! directory as of run R" is a query. A sync streams the source, writes only what changed, and
//! becomes current only when everything is written; nested groups are expanded into effective
//! access with the chain of groups it comes through. This module never talks to a directory
//! server itself (see `sources/`).

mod content_hash;
pub mod effective;
mod failed_runs;
mod grants;
mod import;
pub mod preview;
pub mod snapshot;
pub mod sync;

pub use snapshot::{SyncDiff, SyncRun, current_sync_run};
pub use sync::{Quiet, SyncObserver, SyncOutcome, sync_source, sync_source_observed};
