//! Reviewer resolution: who reviews a person's access. The member's manager when the directory
//! names an active one with an email address; otherwise the first fallback reviewer. Nobody
//! reviews their own access: such an item is rerouted to the next fallback.

use serde::Serialize;

use crate::error::{Error, Result};

/// A person who can receive review requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub external_id: Option<String>,
    pub login: Option<String>,
    pub email: String,
    pub display_name: String,
}

impl Candidate {
    fn is(&self, person_external_id: &str, person_email: Option<&str>) -> bool {
        self.external_id.as_deref() == Some(person_external_id)
            || person_email.is_some_and(|e| e.eq_ignore_ascii_case(&self.email))
    }
}

/// Why an item went to its reviewer; stored on the item for auditors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    Manager,
    Fallback,
    /// The manager (or an earlier fallback) was the person themself.
    SelfReviewRerouted,
}

impl Routing {
    pub fn as_str(self) -> &'static str {
        match self {
            Routing::Manager => "manager",
            Routing::Fallback => "fallback",
            Routing::SelfReviewRerouted => "self_review_rerouted",
        }
    }
}

/// The manager as found in the same snapshot, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerFacts {
    pub candidate: Candidate,
    pub active: bool,
}

/// Picks the reviewer for one person's access.
pub fn choose_reviewer<'a>(
    person_external_id: &str,
    person_email: Option<&str>,
    manager: Option<&'a ManagerFacts>,
    fallbacks: &'a [Candidate],
) -> Result<(&'a Candidate, Routing)> {
    let mut rerouted = false;
    if let Some(manager) = manager.filter(|m| m.active && !m.candidate.email.is_empty()) {
        if !manager.candidate.is(person_external_id, person_email) {
            return Ok((&manager.candidate, Routing::Manager));
        }
        rerouted = true;
    }
    for fallback in fallbacks {
        if fallback.is(person_external_id, person_email) {
            rerouted = true;
            continue;
        }
        let routing = if rerouted {
            Routing::SelfReviewRerouted
        } else {
            Routing::Fallback
        };
        return Ok((fallback, routing));
    }
    Err(Error::Conflict(format!(
        "no reviewer other than the person themself for {}; add another fallback reviewer",
        person_email.unwrap_or(person_external_id)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(id: &str) -> Candidate {
        Candidate {
            external_id: Some(id.into()),
            login: Some(id.into()),
            email: format!("{id}@example.com"),
            display_name: id.to_uppercase(),
        }
    }

    #[test]
    fn active_manager_reviews() {
        let manager = ManagerFacts {
            candidate: candidate("boss"),
            active: true,
        };
        let fallbacks = [candidate("it")];
        let (who, routing) =
            choose_reviewer("ann", Some("ann@example.com"), Some(&manager), &fallbacks).unwrap();
        assert_eq!(who.email, "boss@example.com");
        assert_eq!(routing, Routing::Manager);
    }

    #[test]
    fn missing_or_disabled_manager_goes_to_fallback() {
        let manager = ManagerFacts {
            candidate: candidate("boss"),
            active: false,
        };
        let fallbacks = [candidate("it")];
        let (who, routing) = choose_reviewer("ann", None, Some(&manager), &fallbacks).unwrap();
        assert_eq!(
            (who.email.as_str(), routing),
            ("it@example.com", Routing::Fallback)
        );
        let (who, _) = choose_reviewer("ann", None, None, &fallbacks).unwrap();
        assert_eq!(who.email, "it@example.com");
    }

    #[test]
    fn own_access_is_rerouted_past_the_person() {
        let fallbacks = [candidate("it"), candidate("ciso")];
        let (who, routing) =
            choose_reviewer("it", Some("it@example.com"), None, &fallbacks).unwrap();
        assert_eq!(who.email, "ciso@example.com");
        assert_eq!(routing, Routing::SelfReviewRerouted);
    }

    #[test]
    fn only_self_left_is_an_error() {
        let fallbacks = [candidate("it")];
        assert!(choose_reviewer("it", None, None, &fallbacks).is_err());
    }
}
