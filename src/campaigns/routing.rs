//! Who reviews whose access, for a whole campaign at once. Each person's chain of possible
//! reviewers is their manager, then the fallback reviewers in order. Independence rules move
//! an item along the chain, and every move is recorded as the item's routing reason:
//! - nobody reviews their own access (`self_review_rerouted`);
//! - a manager who is disabled, gone from the directory or has no email is skipped
//!   (`manager_unavailable`);
//! - no mutual pair: when A would review B while B reviews A, one of them (the first by id)
//!   moves on (`mutual_pair_rerouted`), repeated until no pair is left;
//! - a reviewer who holds a privileged group under review does not review that group
//!   (`privileged_holder_rerouted`).
//!
//! The plan is worked out once from every person with an item; it reads nothing itself.

use std::collections::{HashMap, HashSet};

use crate::campaigns::reviewers::{Candidate, ManagerFacts};
use crate::error::{Error, Result};

/// Why an item went to its reviewer; stored on the item for auditors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    Manager,
    /// The directory names no manager.
    Fallback,
    ManagerUnavailable,
    SelfReviewRerouted,
    MutualPairRerouted,
    PrivilegedHolderRerouted,
}

impl Routing {
    pub fn as_str(self) -> &'static str {
        match self {
            Routing::Manager => "manager",
            Routing::Fallback => "fallback",
            Routing::ManagerUnavailable => "manager_unavailable",
            Routing::SelfReviewRerouted => "self_review_rerouted",
            Routing::MutualPairRerouted => "mutual_pair_rerouted",
            Routing::PrivilegedHolderRerouted => "privileged_holder_rerouted",
        }
    }
}

/// What routing needs to know of a person with an item.
#[derive(Debug, Clone)]
pub struct PersonFacts {
    pub external_id: String,
    pub email: Option<String>,
    /// The manager as found in the same snapshot.
    pub manager: Option<ManagerFacts>,
    /// The directory names a manager (found or not).
    pub manager_named: bool,
}

/// Where a person's items go: a position in their chain and why.
#[derive(Debug, Clone, Copy)]
struct Choice {
    position: usize,
    routing: Routing,
}

pub struct RoutingPlan {
    people: HashMap<String, PersonFacts>,
    fallbacks: Vec<Candidate>,
    choice: HashMap<String, Choice>,
}

impl RoutingPlan {
    /// Chooses every person's reviewer and resolves mutual pairs.
    pub fn new(people: HashMap<String, PersonFacts>, fallbacks: Vec<Candidate>) -> Result<Self> {
        let mut plan = RoutingPlan {
            people,
            fallbacks,
            choice: HashMap::new(),
        };
        let mut ids: Vec<String> = plan.people.keys().cloned().collect();
        ids.sort();
        for id in &ids {
            let choice = plan.first_choice(id)?;
            plan.choice.insert(id.clone(), choice);
        }
        // Each round moves at least one person further along a finite chain: it ends.
        loop {
            let mut moved = false;
            for id in &ids {
                let Some(partner) = plan.mutual_partner(id) else {
                    continue;
                };
                if *id < partner {
                    let from = plan.choice[id].position + 1;
                    let (next, _) = plan.next_position(id, from, &HashSet::new())?;
                    plan.choice.insert(
                        id.clone(),
                        Choice {
                            position: next,
                            routing: Routing::MutualPairRerouted,
                        },
                    );
                    moved = true;
                }
            }
            if !moved {
                return Ok(plan);
            }
        }
    }

    /// The reviewer of `person`'s access to `entitlement`; `holders` are the people holding
    /// that entitlement when it is privileged (empty otherwise).
    pub fn reviewer_for(
        &self,
        person: &str,
        holders: &HashSet<String>,
    ) -> Result<(&Candidate, Routing)> {
        let choice = self
            .choice
            .get(person)
            .ok_or_else(|| Error::Internal(format!("no routing for {person}")))?;
        let chosen = self.candidate(person, choice.position);
        let holds = chosen
            .and_then(|c| c.external_id.as_deref())
            .is_some_and(|id| holders.contains(id));
        if !holds {
            let reviewer = chosen.ok_or_else(|| Error::Internal("chain position lost".into()))?;
            return Ok((reviewer, choice.routing));
        }
        let (next, _) = self.next_position(person, choice.position + 1, holders)?;
        let reviewer = self
            .candidate(person, next)
            .ok_or_else(|| Error::Internal("chain position lost".into()))?;
        Ok((reviewer, Routing::PrivilegedHolderRerouted))
    }

    /// The chain of `person`: manager (position 0, when found), then the fallbacks.
    fn candidate(&self, person: &str, position: usize) -> Option<&Candidate> {
        let manager = self.people[person].manager.as_ref().map(|m| &m.candidate);
        match position {
            0 => manager,
            n => self.fallbacks.get(n - 1),
        }
    }

    fn is_self(&self, person: &str, candidate: &Candidate) -> bool {
        let facts = &self.people[person];
        candidate.external_id.as_deref() == Some(person)
            || facts
                .email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(&candidate.email))
    }

    fn first_choice(&self, person: &str) -> Result<Choice> {
        let facts = &self.people[person];
        let mut rerouted_from_self = false;
        if let Some(manager) = &facts.manager {
            let usable = manager.active && !manager.candidate.email.is_empty();
            if usable && !self.is_self(person, &manager.candidate) {
                return Ok(Choice {
                    position: 0,
                    routing: Routing::Manager,
                });
            }
            rerouted_from_self = usable;
        }
        let (position, passed_over) = self.next_position(person, 1, &HashSet::new())?;
        let routing = if rerouted_from_self {
            Routing::SelfReviewRerouted
        } else if let Some(reason) = passed_over {
            reason
        } else if facts.manager_named {
            Routing::ManagerUnavailable
        } else {
            Routing::Fallback
        };
        Ok(Choice { position, routing })
    }

    /// The first fallback position from `from` that is neither the person, nor someone the
    /// person reviews, nor a holder in `holders`; with the reason the first candidate passed
    /// over was passed over, if any was.
    fn next_position(
        &self,
        person: &str,
        from: usize,
        holders: &HashSet<String>,
    ) -> Result<(usize, Option<Routing>)> {
        let mut passed_over = None;
        for position in from.max(1)..=self.fallbacks.len() {
            let Some(candidate) = self.candidate(person, position) else {
                continue;
            };
            let id = candidate.external_id.as_deref();
            let reason = if self.is_self(person, candidate) {
                Some(Routing::SelfReviewRerouted)
            } else if id.is_some_and(|id| self.reviewer_id_of(id) == Some(person)) {
                Some(Routing::MutualPairRerouted)
            } else if id.is_some_and(|id| holders.contains(id)) {
                Some(Routing::PrivilegedHolderRerouted)
            } else {
                None
            };
            match reason {
                None => return Ok((position, passed_over)),
                Some(reason) => {
                    passed_over.get_or_insert(reason);
                }
            }
        }
        Err(Error::Conflict(format!(
            "no independent reviewer is left for the person with id {person}: every fallback \
             reviewer is the person, someone they review, or a holder of the privileged group; \
             add another fallback reviewer"
        )))
    }

    /// The external id of the reviewer currently chosen for `person`, if they are a person.
    fn reviewer_id_of(&self, person: &str) -> Option<&str> {
        let choice = self.choice.get(person)?;
        self.candidate(person, choice.position)?
            .external_id
            .as_deref()
    }

    /// The person who reviews `person` while `person` reviews them, if any.
    fn mutual_partner(&self, person: &str) -> Option<String> {
        let reviewer = self.reviewer_id_of(person)?;
        (self.reviewer_id_of(reviewer) == Some(person)).then(|| reviewer.to_string())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
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

    fn person(id: &str, manager: Option<(&str, bool)>) -> (String, PersonFacts) {
        (
            id.to_string(),
            PersonFacts {
                external_id: id.into(),
                email: Some(format!("{id}@example.com")),
                manager: manager.map(|(m, active)| ManagerFacts {
                    candidate: candidate(m),
                    active,
                }),
                manager_named: manager.is_some(),
            },
        )
    }

    fn reviewer(plan: &RoutingPlan, id: &str) -> (String, &'static str) {
        let (who, routing) = plan.reviewer_for(id, &HashSet::new()).unwrap();
        (who.external_id.clone().unwrap(), routing.as_str())
    }

    #[test]
    fn each_others_managers_are_not_each_others_reviewers() {
        let people = HashMap::from([
            person("ann", Some(("bob", true))),
            person("bob", Some(("ann", true))),
        ]);
        let plan = RoutingPlan::new(people, vec![candidate("ciso")]).unwrap();
        assert_eq!(
            reviewer(&plan, "ann"),
            ("ciso".into(), "mutual_pair_rerouted")
        );
        assert_eq!(reviewer(&plan, "bob"), ("ann".into(), "manager"));
    }

    #[test]
    fn unavailable_managers_and_self_review_are_skipped_with_their_reason() {
        let people = HashMap::from([
            person("ann", Some(("gone", false))),
            person("ciso", None),
            person("dan", None),
        ]);
        let plan = RoutingPlan::new(people, vec![candidate("ciso"), candidate("audit")]).unwrap();
        assert_eq!(
            reviewer(&plan, "ann"),
            ("ciso".into(), "manager_unavailable")
        );
        assert_eq!(
            reviewer(&plan, "ciso"),
            ("audit".into(), "self_review_rerouted")
        );
        assert_eq!(reviewer(&plan, "dan"), ("ciso".into(), "fallback"));
    }

    #[test]
    fn a_fallback_and_the_person_they_review_do_not_review_each_other() {
        // ciso has no manager (reviewed by audit); audit's manager is ciso: a pair.
        let people = HashMap::from([person("audit", Some(("ciso", true))), person("ciso", None)]);
        let plan = RoutingPlan::new(people, vec![candidate("audit"), candidate("ext")]).unwrap();
        assert_eq!(reviewer(&plan, "audit"), ("ciso".into(), "manager"));
        assert_eq!(
            reviewer(&plan, "ciso"),
            ("ext".into(), "mutual_pair_rerouted")
        );
    }

    #[test]
    fn a_holder_of_a_privileged_group_does_not_review_it() {
        let people = HashMap::from([person("ann", Some(("boss", true)))]);
        let plan = RoutingPlan::new(people, vec![candidate("ciso")]).unwrap();
        let holders: HashSet<String> = ["boss".to_string()].into();
        let (who, routing) = plan.reviewer_for("ann", &holders).unwrap();
        assert_eq!(
            (who.email.as_str(), routing.as_str()),
            ("ciso@example.com", "privileged_holder_rerouted")
        );
    }

    #[test]
    fn no_independent_reviewer_left_is_an_error() {
        let people = HashMap::from([person("it", None)]);
        assert!(RoutingPlan::new(people, vec![candidate("it")]).is_err());
    }
}
