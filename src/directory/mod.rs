//! The directory: immutable snapshots of who has what, one per successful sync run. A sync
//! streams a source's records into rows keyed by its run id; only when everything is written
//! does the source's "current snapshot" pointer move, so a failed sync leaves the previous
//! snapshot current. This module never talks to a directory server itself (see `sources/`).

pub mod import;
pub mod snapshot;

pub use import::{SyncOutcome, sync_source};
pub use snapshot::{SyncRun, current_sync_run};
