//! Who reviews whose access, for a whole campaign at once. The chain of possible reviewers of
//! an access is made of the definition's steps in order (`reviewer_chain`): the member's
//! manager, the group's owner, the named reviewers; then the fallback reviewers. Independence
//! rules move an item along its chain, and every move is recorded as the item's routing
//! reason:
//! - nobody reviews their own access (`self_review_rerouted`);
//! - a manager or owner who is disabled, gone from the directory or has no email is skipped
//!   (`manager_unavailable`, `owner_unavailable`);
//! - no mutual pair: when A would review one of B's accesses while B reviews one of A's, the
//!   first of the two by id moves on (`mutual_pair_rerouted`), repeated until no pair is left;
//! - a reviewer who holds a privileged group under review does not review that group
//!   (`privileged_holder_rerouted`).
//!
//! A chain depends on the person and, when the chain names the owner, on the group's owner:
//! the plan is worked out once per (person, owner) pair with an access, not per access, and
//! reads nothing itself.

use std::collections::{HashMap, HashSet};

use crate::campaigns::reviewers::{Candidate, ManagerFacts};
pub use crate::config::ChainStep;
use crate::error::{Error, Result};

/// Why an item went to its reviewer; stored on the item for auditors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    Manager,
    /// The group's owner.
    Owner,
    /// One of the definition's named reviewers.
    Named,
    /// Nobody earlier in the chain was named (no manager, no owner).
    Fallback,
    ManagerUnavailable,
    OwnerUnavailable,
    SelfReviewRerouted,
    MutualPairRerouted,
    PrivilegedHolderRerouted,
    /// A later stage of a campaign reviewed in stages: not the person who reviewed the
    /// access in an earlier stage.
    EarlierStageReviewerRerouted,
}

impl Routing {
    pub fn as_str(self) -> &'static str {
        match self {
            Routing::Manager => "manager",
            Routing::Owner => "owner",
            Routing::Named => "named",
            Routing::Fallback => "fallback",
            Routing::ManagerUnavailable => "manager_unavailable",
            Routing::OwnerUnavailable => "owner_unavailable",
            Routing::SelfReviewRerouted => "self_review_rerouted",
            Routing::MutualPairRerouted => "mutual_pair_rerouted",
            Routing::PrivilegedHolderRerouted => "privileged_holder_rerouted",
            Routing::EarlierStageReviewerRerouted => "earlier_stage_reviewer_rerouted",
        }
    }
}

/// The owner of a group as the campaign sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupOwner {
    /// No owner is named, or the chain does not ask for one.
    NotNamed,
    /// An owner is named who is not a person of the snapshot.
    Missing,
    /// The owner: a person of the snapshot (their external id).
    Person(String),
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

/// The reviewers a chain can draw on besides managers.
#[derive(Debug, Clone, Default)]
pub struct ChainPeople {
    pub steps: Vec<ChainStep>,
    /// Group owners by external id.
    pub owners: HashMap<String, ManagerFacts>,
    pub named: Vec<Candidate>,
    pub fallbacks: Vec<Candidate>,
}

/// What a chain is worked out for: a person, and their group's owner.
pub type Subject = (String, GroupOwner);

/// Where a subject's items go: a position in their chain and why.
#[derive(Debug, Clone, Copy)]
struct Choice {
    position: usize,
    routing: Routing,
}

/// One position of a chain: who (if anyone usable), and the step it comes from.
struct Slot<'a> {
    candidate: Option<&'a Candidate>,
    /// Why the position cannot be used when someone was named there but cannot act.
    unavailable: Option<Routing>,
    routing: Routing,
    fallback: bool,
}

pub struct RoutingPlan {
    people: HashMap<String, PersonFacts>,
    chain: ChainPeople,
    choice: HashMap<Subject, Choice>,
    /// Each person's subjects (one per group owner they have an access under).
    subjects_of: HashMap<String, Vec<Subject>>,
}

impl RoutingPlan {
    /// Chooses the reviewer of every subject and resolves mutual pairs.
    pub fn new(
        people: HashMap<String, PersonFacts>,
        subjects: impl IntoIterator<Item = Subject>,
        chain: ChainPeople,
    ) -> Result<Self> {
        let mut ordered: Vec<Subject> = subjects
            .into_iter()
            .filter(|(person, _)| people.contains_key(person))
            .collect();
        ordered.sort();
        ordered.dedup();
        let mut subjects_of: HashMap<String, Vec<Subject>> = HashMap::new();
        for subject in &ordered {
            subjects_of
                .entry(subject.0.clone())
                .or_default()
                .push(subject.clone());
        }
        let mut plan = RoutingPlan {
            people,
            chain,
            choice: HashMap::new(),
            subjects_of,
        };
        for subject in &ordered {
            let choice = plan.first_choice(subject)?;
            plan.choice.insert(subject.clone(), choice);
        }
        // Each round moves at least one subject further along a finite chain: it ends.
        loop {
            let mut moved = false;
            for subject in &ordered {
                let Some(partner) = plan.mutual_partner(subject) else {
                    continue;
                };
                if subject.0 < partner {
                    let from = plan.choice[subject].position + 1;
                    let (next, _) = plan.next_position(subject, from, &HashSet::new())?;
                    plan.choice.insert(
                        subject.clone(),
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

    /// The reviewer of `person`'s access to a group owned by `owner`; `holders` are the
    /// people holding that group when it is privileged (empty otherwise).
    pub fn reviewer_for(
        &self,
        person: &str,
        owner: &GroupOwner,
        holders: &HashSet<String>,
    ) -> Result<(&Candidate, Routing)> {
        self.reviewer_excluding(person, owner, holders, Routing::PrivilegedHolderRerouted)
    }

    /// The same, passing over the people in `excluded` (by external id): `reason` is
    /// recorded when the usual reviewer is one of them.
    pub fn reviewer_excluding(
        &self,
        person: &str,
        owner: &GroupOwner,
        excluded: &HashSet<String>,
        reason: Routing,
    ) -> Result<(&Candidate, Routing)> {
        let holders = excluded;
        let subject = (person.to_string(), owner.clone());
        let choice = self
            .choice
            .get(&subject)
            .ok_or_else(|| Error::Internal(format!("no routing for {person}")))?;
        let chosen = self.slot(&subject, choice.position).candidate;
        let holds = chosen
            .and_then(|c| c.external_id.as_deref())
            .is_some_and(|id| holders.contains(id));
        if !holds {
            let reviewer = chosen.ok_or_else(|| Error::Internal("chain position lost".into()))?;
            return Ok((reviewer, choice.routing));
        }
        let (next, _) = self.next_position(&subject, choice.position + 1, holders)?;
        let reviewer = self
            .slot(&subject, next)
            .candidate
            .ok_or_else(|| Error::Internal("chain position lost".into()))?;
        Ok((reviewer, reason))
    }

    /// How many positions a chain has: one per manager or owner step, one per named
    /// reviewer, one per fallback.
    fn chain_len(&self) -> usize {
        let steps: usize = self
            .chain
            .steps
            .iter()
            .map(|step| match step {
                ChainStep::Named => self.chain.named.len(),
                ChainStep::Manager | ChainStep::Owner => 1,
            })
            .sum();
        steps + self.chain.fallbacks.len()
    }

    /// Position `position` of the subject's chain.
    fn slot(&self, subject: &Subject, position: usize) -> Slot<'_> {
        let mut at = position;
        for step in &self.chain.steps {
            match step {
                ChainStep::Manager if at == 0 => {
                    let facts = &self.people[&subject.0];
                    let manager = facts.manager.as_ref();
                    let usable = manager.filter(|m| m.active && !m.candidate.email.is_empty());
                    return Slot {
                        candidate: usable.map(|m| &m.candidate),
                        unavailable: (usable.is_none() && facts.manager_named)
                            .then_some(Routing::ManagerUnavailable),
                        routing: Routing::Manager,
                        fallback: false,
                    };
                }
                ChainStep::Owner if at == 0 => {
                    let owner = match &subject.1 {
                        GroupOwner::Person(id) => self.chain.owners.get(id),
                        GroupOwner::NotNamed | GroupOwner::Missing => None,
                    };
                    let usable = owner.filter(|o| o.active && !o.candidate.email.is_empty());
                    return Slot {
                        candidate: usable.map(|o| &o.candidate),
                        unavailable: (usable.is_none() && subject.1 != GroupOwner::NotNamed)
                            .then_some(Routing::OwnerUnavailable),
                        routing: Routing::Owner,
                        fallback: false,
                    };
                }
                ChainStep::Named if at < self.chain.named.len() => {
                    return Slot {
                        candidate: self.chain.named.get(at),
                        unavailable: None,
                        routing: Routing::Named,
                        fallback: false,
                    };
                }
                ChainStep::Manager | ChainStep::Owner => at -= 1,
                ChainStep::Named => at -= self.chain.named.len(),
            }
        }
        Slot {
            candidate: self.chain.fallbacks.get(at),
            unavailable: None,
            routing: Routing::Fallback,
            fallback: true,
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

    /// The first usable position: managers, owners and named reviewers only need to be
    /// someone else (mutual pairs among them are resolved afterwards); a fallback must not
    /// be reviewed by the person either.
    fn first_choice(&self, subject: &Subject) -> Result<Choice> {
        let mut passed_over = None;
        for position in 0..self.chain_len() {
            let slot = self.slot(subject, position);
            if slot.fallback {
                let (position, fallback_reason) =
                    self.next_position(subject, position, &HashSet::new())?;
                let routing = passed_over.or(fallback_reason).unwrap_or(Routing::Fallback);
                return Ok(Choice { position, routing });
            }
            let Some(candidate) = slot.candidate else {
                if let Some(reason) = slot.unavailable {
                    passed_over.get_or_insert(reason);
                }
                continue;
            };
            if self.is_self(&subject.0, candidate) {
                passed_over.get_or_insert(Routing::SelfReviewRerouted);
                continue;
            }
            return Ok(Choice {
                position,
                routing: passed_over.unwrap_or(slot.routing),
            });
        }
        Err(self.nobody_left(subject))
    }

    /// The first position from `from` whose reviewer is usable and neither the person, nor
    /// someone the person reviews, nor a holder in `holders`; with the reason the first
    /// candidate passed over was passed over, if any was.
    fn next_position(
        &self,
        subject: &Subject,
        from: usize,
        holders: &HashSet<String>,
    ) -> Result<(usize, Option<Routing>)> {
        let person = subject.0.as_str();
        let mut passed_over = None;
        for position in from..self.chain_len() {
            let slot = self.slot(subject, position);
            let Some(candidate) = slot.candidate else {
                if let Some(reason) = slot.unavailable {
                    passed_over.get_or_insert(reason);
                }
                continue;
            };
            let id = candidate.external_id.as_deref();
            let reason = if self.is_self(person, candidate) {
                Some(Routing::SelfReviewRerouted)
            } else if id.is_some_and(|id| self.reviews_someone_of(person, id)) {
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
        Err(self.nobody_left(subject))
    }

    fn nobody_left(&self, subject: &Subject) -> Error {
        Error::Conflict(format!(
            "no independent reviewer is left for the person with id {}: every reviewer in the \
             chain is the person, someone they review, or a holder of the privileged group; \
             add another fallback reviewer",
            subject.0
        ))
    }

    /// The external id of the reviewer currently chosen for `subject`, if they are a person.
    fn reviewer_id_of(&self, subject: &Subject) -> Option<&str> {
        let choice = self.choice.get(subject)?;
        self.slot(subject, choice.position)
            .candidate?
            .external_id
            .as_deref()
    }

    /// Whether `reviewer` currently reviews one of `person`'s accesses.
    fn reviews_someone_of(&self, reviewer: &str, person: &str) -> bool {
        self.subjects_of.get(person).is_some_and(|subjects| {
            subjects
                .iter()
                .any(|s| self.reviewer_id_of(s) == Some(reviewer))
        })
    }

    /// The person who reviews `subject`'s person while that person reviews one of theirs.
    fn mutual_partner(&self, subject: &Subject) -> Option<String> {
        let reviewer = self.reviewer_id_of(subject)?;
        self.reviews_someone_of(&subject.0, reviewer)
            .then(|| reviewer.to_string())
    }
}

#[cfg(test)]
mod tests;
