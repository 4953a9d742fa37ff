//! `soc2.json`: which file of the pack evidences which point of the SOC 2 Trust Services
//! Criteria a user access review answers (CC6.1, CC6.2, CC6.3, C1.1), with the campaign's
//! own figures next to each, so that an auditor maps the pack to their test steps without
//! asking. The same mapping is a section of `report.html`.

use serde::Serialize;

use crate::evidence::reviewer_figures::ReviewerFigures;
use crate::evidence::summary::Summary;

/// One file and what it shows for a criterion.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EvidenceFile {
    pub file: &'static str,
    pub shows: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Criterion {
    pub id: &'static str,
    /// What the criterion asks, in short (paraphrased).
    pub topic: &'static str,
    /// How this campaign answers it.
    pub answer: String,
    pub evidence: Vec<EvidenceFile>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Soc2Mapping {
    pub framework: &'static str,
    pub campaign: String,
    pub criteria: Vec<Criterion>,
    /// Where remediation of revoked access is shown.
    pub remediation: &'static str,
    pub retention_years: u32,
    /// The earliest date this campaign's evidence may be removed (once it has closed).
    pub keep_until: Option<String>,
}

fn file(file: &'static str, shows: impl Into<String>) -> EvidenceFile {
    EvidenceFile {
        file,
        shows: shows.into(),
    }
}

/// The mapping for a campaign with these figures, whose items are of `groups` groups.
pub fn soc2_mapping(
    summary: &Summary,
    reviewers: &ReviewerFigures,
    groups: usize,
    retention_years: u32,
    keep_until: Option<String>,
) -> Soc2Mapping {
    let t = &summary.totals;
    let rerouted = summary.exceptions.get("rerouted").copied().unwrap_or(0);
    let reassigned = summary.exceptions.get("reassigned").copied().unwrap_or(0);
    let asked = reviewers.asked();
    let deciding = reviewers.deciding();
    let criteria = vec![
        Criterion {
            id: "CC6.1",
            topic: "Logical access to protected information assets is restricted and the \
                    access that exists is known (inventory of access, privileged access \
                    identified).",
            answer: format!(
                "The population under review was extracted from the directory by the recorded \
                 sync run and frozen at opening: {} accesses of {} groups, {} of them \
                 privileged.",
                t.items, groups, summary.privileged.items
            ),
            evidence: vec![
                file(
                    "population.json",
                    "the source, server, bind identity, searches and counts of the sync run the \
                     population comes from",
                ),
                file(
                    "items.csv",
                    "one row per access under review, with its privileged marker and the \
                     groups it comes through",
                ),
                file(
                    "summary.json",
                    "the population per group and per reviewer, reconciling to the items",
                ),
            ],
        },
        Criterion {
            id: "CC6.2",
            topic: "Access is authorised by a responsible person and removed when it is no \
                    longer authorised.",
            answer: if summary.timeliness.closed_at.is_some() {
                format!(
                    "{} accesses were approved and {} revoked; {deciding} of {asked} reviewers \
                     decided; {} received no decision by the close and got the no-response \
                     policy's outcome.",
                    t.approved, t.revoked, t.no_response
                )
            } else {
                format!(
                    "The campaign is open: {} accesses approved and {} revoked so far by \
                     {deciding} of {asked} reviewers; {} still pending.",
                    t.approved, t.revoked, t.pending
                )
            },
            evidence: vec![
                file(
                    "items.csv",
                    "each access's reviewer, final outcome, decision time, comment and how the \
                     reviewer authenticated",
                ),
                file(
                    "decisions.jsonl",
                    "every decision including changes of mind, each proved by an event",
                ),
                file(
                    "summary.json",
                    "timeliness: opened, due, closed, late and missing",
                ),
            ],
        },
        Criterion {
            id: "CC6.3",
            topic: "Access is granted, changed and removed according to roles and \
                    responsibilities, with least privilege and segregation of duties.",
            answer: format!(
                "The reviewer chain's independence rules (nobody reviews their own access, no \
                 mutual pair, no holder of a privileged group reviews it) and unavailable \
                 reviewers rerouted {rerouted} items, and {reassigned} moved after opening \
                 (escalation, delegation, an admin); each is listed with its reason."
            ),
            evidence: vec![
                file(
                    "exceptions.csv",
                    "every reroute, reassignment, unanswered item and late decision",
                ),
                file("items.csv", "the routing reason of every item"),
                file(
                    "remediation.csv",
                    "every revoked access removed in its source and proved gone by a later sync",
                ),
                file(
                    "events.jsonl",
                    "the campaign's events (routing, reassignments, decisions, close)",
                ),
            ],
        },
        Criterion {
            id: "C1.1",
            topic: "Confidential information is identified and retained as required, and \
                    protected from unauthorised change.",
            answer: format!(
                "The events are entries of an append-only log, each proved by an inclusion \
                 proof against a signed checkpoint; the pack's files are fixed by a signed \
                 manifest; evidence is kept {retention_years} years."
            ),
            evidence: vec![
                file(
                    "events.jsonl",
                    "each event with its Merkle inclusion proof against checkpoint.txt",
                ),
                file("checkpoint.txt", "the signed tree head of the event log"),
                file(
                    "manifest.json",
                    "the SHA-256 of every file, signed in manifest.sig",
                ),
                file(
                    "public-key.txt",
                    "the key that signs checkpoints and manifests (compare it with the one \
                     the service publishes)",
                ),
                file(
                    "key-history.jsonl",
                    "each rotation of that key, endorsed by the key before it (attest verify \
                     --public-key with an older key follows them)",
                ),
            ],
        },
    ];
    Soc2Mapping {
        framework: "AICPA Trust Services Criteria (2017, revised points of focus 2022)",
        campaign: summary.campaign.clone(),
        criteria,
        remediation: "remediation.csv lists every revoked access with how it was carried out \
                      (the group written, the webhook, or IT's ticket), its state, and the sync \
                      run that proved it gone; each step is a remediation.* event in \
                      events.jsonl",
        retention_years,
        keep_until,
    }
}
