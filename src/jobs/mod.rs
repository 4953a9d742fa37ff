//! Background work inside `attest serve`: a durable job queue in the database (`queue`) and
//! the scheduler that fills and runs it (`scheduler`; `follow_up` for what open campaigns
//! need: reminders, escalation, the close; `approval_expiry` for approvals given until a
//! date; `checkpoints` for the signed checkpoints of the event log; `sync_now` for a sync an
//! admin asked for in the console). Several instances may run both against one
//! PostgreSQL database: every job is claimed by one of them, and campaign openings are unique
//! per definition and period.

pub mod approval_expiry;
pub mod checkpoints;
pub mod follow_up;
pub mod queue;
pub mod scheduler;
pub mod sync_now;

pub use scheduler::Scheduler;
