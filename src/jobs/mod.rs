//! Background work inside `attest serve`: a durable job queue in the database (`queue`) and
//! the scheduler that fills and runs it (`scheduler`). Several instances may run both against
//! one PostgreSQL database: every job is claimed by one of them, and campaign openings are
//! unique per definition and period.

pub mod queue;
pub mod scheduler;

pub use scheduler::Scheduler;
