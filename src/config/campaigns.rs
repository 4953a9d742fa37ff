//! Campaign definitions (`[campaigns.NAME]`): what is reviewed, by whom, for how long, and
//! on which schedule; and the scheduler that opens them (`[scheduler]`). Checks are in
//! `validate.rs`; periods are worked out in `campaigns::schedule`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a campaign reviews, who reviews it and for how long.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignDefinition {
    /// Human title shown in mail and pages; defaults to the definition's key.
    #[serde(default)]
    pub title: Option<String>,
    /// Name of the source (key under `[sources]`) whose current snapshot is reviewed.
    pub source: String,
    /// Group DNs or names to review; empty means every group of the source.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Only review groups marked privileged.
    #[serde(default)]
    pub privileged_only: bool,
    /// Review the access of service accounts (as the source marks them).
    #[serde(default = "default_true")]
    pub include_service_accounts: bool,
    /// Review the access of accounts the directory shows disabled (still access until it
    /// is removed).
    #[serde(default = "default_true")]
    pub include_disabled: bool,
    /// An off-cycle follow-up review: only the accesses that appeared (joiners, movers) since
    /// the snapshot of the latest campaign of this definition or of `new_since`, so that
    /// access granted between two full reviews is reviewed too.
    #[serde(default)]
    pub only_new_access: bool,
    /// With `only_new_access`: the full review it follows (e.g. `quarterly`): what that
    /// reviewed is not reviewed again.
    #[serde(default)]
    pub new_since: Option<String>,
    /// Who reviews an access, tried in order before the fallback reviewers: `manager` (the
    /// member's manager; the default), `owner` (the group's owner, from the source's `owner`
    /// or `managedBy`, or `group_owners`), `named` (the `named_reviewers`, in order).
    #[serde(default = "default_reviewer_chain")]
    pub reviewer_chain: Vec<ChainStep>,
    /// Review in stages, one after the other (the manager, then the group's owner): each
    /// stage has its own `reviewer_chain` and, but for the last, `days`. Empty: one stage
    /// with the definition's `reviewer_chain`.
    #[serde(default)]
    pub stages: Vec<StageDefinition>,
    /// How the stages' decisions combine (with `stages`).
    #[serde(default)]
    pub stage_outcome: StageOutcome,
    /// People (email or login) who review every access when `reviewer_chain` has `named`.
    #[serde(default)]
    pub named_reviewers: Vec<String>,
    /// Group owners by group name or DN, over what the source says:
    /// `{ "prod-admins" = "alice@example.com" }`.
    #[serde(default)]
    pub group_owners: BTreeMap<String, String>,
    /// Reviewers (email or login) used, in order, when nobody earlier in the chain can
    /// review an access.
    pub fallback_reviewers: Vec<String>,
    #[serde(default = "default_duration_days")]
    pub duration_days: u32,
    /// When a campaign opens by itself: `quarterly` (calendar quarters, the default),
    /// `monthly`, `yearly`, a cron expression (`0 9 1 * *`: minute hour day month weekday), or
    /// `manual` (only `attest campaign start`).
    #[serde(default = "default_schedule")]
    pub schedule: String,
    /// IANA time zone the schedule is read in (`Europe/Berlin`); periods follow its calendar
    /// and daylight-saving changes.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// On a first start in the middle of a period: open that period's campaign now
    /// (`current`, the default: a quarter must not go unreviewed) or wait for the next.
    #[serde(default)]
    pub first_period: FirstPeriod,
    /// Sync the source just before a scheduled campaign opens.
    #[serde(default = "default_sync_before")]
    pub sync_before: bool,
    /// Days before the due date on which reviewers who still have undecided items are
    /// reminded (`[7, 2]` by default; `[]` for none).
    #[serde(default = "default_reminders")]
    pub reminders: Vec<u32>,
    /// Days after opening (after the start of each stage, for a campaign in stages) when a
    /// reviewer's undecided items move to their manager (or the next fallback reviewer);
    /// unset, nothing is escalated.
    #[serde(default)]
    pub escalate_after_days: Option<u32>,
    /// What an access nobody decided becomes at close: `flag` (kept and listed as unreviewed,
    /// the default), `keep`, or `revoke`.
    #[serde(default)]
    pub no_response: NoResponse,
    /// With `no_response = "revoke"`: the largest share (0 to 1) of a campaign's items that
    /// a close revokes without an admin's confirmation (`--confirm-revocations`).
    #[serde(default = "default_max_auto_revoke_share")]
    pub max_auto_revoke_share: f64,
    /// Close by itself at the due date (inside `attest serve`).
    #[serde(default = "default_close_at_due")]
    pub close_at_due: bool,
    /// Which decisions must give a reason: `revoke` (the default), `approve`,
    /// `privileged_approve` (approving privileged access); `[]` for none.
    #[serde(default = "default_reason_required_for")]
    pub reason_required_for: Vec<ReasonRequired>,
}

impl CampaignDefinition {
    /// The reviewer chain of each stage, in order (one stage when `stages` is empty).
    pub fn stage_chains(&self) -> Vec<Vec<ChainStep>> {
        if self.stages.is_empty() {
            return vec![self.reviewer_chain.clone()];
        }
        self.stages
            .iter()
            .map(|s| s.reviewer_chain.clone())
            .collect()
    }

    /// A definition of `source` with every default (quarterly, UTC, 14 days).
    pub fn for_source(source: &str, fallback_reviewers: Vec<String>) -> CampaignDefinition {
        CampaignDefinition {
            title: None,
            source: source.to_string(),
            groups: Vec::new(),
            privileged_only: false,
            include_service_accounts: true,
            include_disabled: true,
            only_new_access: false,
            new_since: None,
            reviewer_chain: default_reviewer_chain(),
            stages: Vec::new(),
            stage_outcome: StageOutcome::default(),
            named_reviewers: Vec::new(),
            group_owners: BTreeMap::new(),
            fallback_reviewers,
            duration_days: default_duration_days(),
            schedule: default_schedule(),
            timezone: default_timezone(),
            first_period: FirstPeriod::default(),
            sync_before: default_sync_before(),
            reminders: default_reminders(),
            escalate_after_days: None,
            no_response: NoResponse::default(),
            max_auto_revoke_share: default_max_auto_revoke_share(),
            close_at_due: default_close_at_due(),
            reason_required_for: default_reason_required_for(),
        }
    }
}

/// One step of a reviewer chain, before the fallback reviewers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChainStep {
    /// The member's manager.
    Manager,
    /// The group's owner (from the source, or `group_owners`).
    Owner,
    /// The definition's `named_reviewers`, in order.
    Named,
}

impl ChainStep {
    pub fn as_str(self) -> &'static str {
        match self {
            ChainStep::Manager => "manager",
            ChainStep::Owner => "owner",
            ChainStep::Named => "named",
        }
    }
}

/// One stage of a campaign reviewed in stages.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StageDefinition {
    /// Who reviews in this stage, before the fallback reviewers.
    pub reviewer_chain: Vec<ChainStep>,
    /// How long the stage lasts; the last stage lasts until the due date and has none.
    #[serde(default)]
    pub days: Option<u32>,
}

/// How the decisions of a campaign's stages make its outcome. In both, an access nobody
/// decided in a stage goes on to the next, and the last stage's decision is the outcome of
/// what reaches it.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StageOutcome {
    /// An access stays only if every stage approves it: approvals go on to the next stage,
    /// a revocation is final.
    #[default]
    AllApprove,
    /// An access stays if any stage approves it: revocations go on to the next stage for a
    /// second opinion, an approval is final.
    AnyApprove,
}

impl StageOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            StageOutcome::AllApprove => "all_approve",
            StageOutcome::AnyApprove => "any_approve",
        }
    }
}

fn default_reviewer_chain() -> Vec<ChainStep> {
    vec![ChainStep::Manager]
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FirstPeriod {
    #[default]
    Current,
    Next,
}

/// What happens at close to an access nobody decided.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NoResponse {
    /// Kept, and listed as unreviewed for follow-up.
    #[default]
    Flag,
    /// Kept.
    Keep,
    /// Revoked, within `max_auto_revoke_share`.
    Revoke,
}

impl NoResponse {
    pub fn as_str(self) -> &'static str {
        match self {
            NoResponse::Flag => "flag",
            NoResponse::Keep => "keep",
            NoResponse::Revoke => "revoke",
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_reminders() -> Vec<u32> {
    vec![7, 2]
}

fn default_max_auto_revoke_share() -> f64 {
    0.2
}

fn default_close_at_due() -> bool {
    true
}

fn default_reason_required_for() -> Vec<ReasonRequired> {
    vec![ReasonRequired::Revoke]
}

/// A decision that must give a reason (see `reason_required_for`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReasonRequired {
    Revoke,
    Approve,
    /// Approving access to a privileged group.
    PrivilegedApprove,
}

fn default_schedule() -> String {
    "quarterly".into()
}

fn default_timezone() -> String {
    "UTC".into()
}

fn default_sync_before() -> bool {
    true
}

/// The scheduler inside `attest serve`: how often it looks for due work, and when an opening
/// counts as late.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// Run the scheduler in this instance (several instances may; work is claimed once).
    pub enabled: bool,
    /// Seconds between two looks for due work.
    pub tick_seconds: u64,
    /// A campaign opened this long after its period began is marked late (the service was
    /// down across the boundary).
    pub late_after_minutes: u64,
    /// Attempts of a failing job (a sync that cannot reach its server) before it is given up.
    pub max_attempts: u32,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            enabled: true,
            tick_seconds: 60,
            late_after_minutes: 60,
            max_attempts: 5,
        }
    }
}

fn default_duration_days() -> u32 {
    14
}
