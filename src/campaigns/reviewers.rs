//! The people who can review: a candidate reviewer (a person of the snapshot, or an email
//! address named as fallback) and a person's manager as the snapshot has them. Who reviews
//! which item is decided in `routing`.

use serde::Serialize;

/// A person who can receive review requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub external_id: Option<String>,
    pub login: Option<String>,
    pub email: String,
    pub display_name: String,
}

/// The manager as found in the same snapshot, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerFacts {
    pub candidate: Candidate,
    pub active: bool,
}
