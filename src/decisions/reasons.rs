//! Which decisions must say why, per campaign definition (`reason_required_for`), and the
//! check a decision makes inside its transaction, where it knows whether the access is
//! privileged. A reason is the decision's comment.

use crate::config::{CampaignDefinition, Config, ReasonRequired};
use crate::decisions::record::DecisionOutcome;
use crate::error::{Error, Result};

/// The decisions that need a reason. The default needs none: callers that enforce a
/// definition's rules build them with [`ReasonRules::of`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReasonRules {
    revoke: bool,
    approve: bool,
    privileged_approve: bool,
}

impl ReasonRules {
    pub fn of(definition: &CampaignDefinition) -> ReasonRules {
        let wants = |rule| definition.reason_required_for.contains(&rule);
        ReasonRules {
            revoke: wants(ReasonRequired::Revoke),
            approve: wants(ReasonRequired::Approve),
            privileged_approve: wants(ReasonRequired::PrivilegedApprove),
        }
    }

    /// The rules of the configured definition `name`; a campaign whose definition is no
    /// longer configured keeps the default one's (a reason to revoke).
    pub fn configured(config: &Config, name: &str) -> ReasonRules {
        match config.campaigns.get(name) {
            Some(definition) => ReasonRules::of(definition),
            None => ReasonRules {
                revoke: true,
                ..ReasonRules::default()
            },
        }
    }

    /// Whether `outcome` on an access (privileged or not) needs a reason.
    pub fn needs_reason(&self, outcome: DecisionOutcome, privileged: bool) -> bool {
        match outcome {
            DecisionOutcome::Revoke => self.revoke,
            DecisionOutcome::Approve => self.approve || (privileged && self.privileged_approve),
            DecisionOutcome::DontKnow => false,
        }
    }

    /// Refuses a decision that needs a reason and has none (`comment` already trimmed).
    pub fn check(
        &self,
        outcome: DecisionOutcome,
        privileged: bool,
        comment: Option<&str>,
    ) -> Result<()> {
        if comment.is_some() || !self.needs_reason(outcome, privileged) {
            return Ok(());
        }
        Err(Error::ReasonRequired(match outcome {
            DecisionOutcome::Revoke => "say why this access should be revoked".into(),
            _ if privileged && !self.approve => {
                "say why this privileged access is still needed".into()
            }
            _ => "say why this access is still needed".into(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(required: Vec<ReasonRequired>) -> ReasonRules {
        let mut definition = CampaignDefinition::for_source("ldap", Vec::new());
        definition.reason_required_for = required;
        ReasonRules::of(&definition)
    }

    #[test]
    fn the_default_definition_needs_a_reason_to_revoke_only() {
        let default = ReasonRules::of(&CampaignDefinition::for_source("ldap", Vec::new()));
        assert!(default.check(DecisionOutcome::Revoke, false, None).is_err());
        assert!(
            default
                .check(DecisionOutcome::Revoke, false, Some("left"))
                .is_ok()
        );
        assert!(default.check(DecisionOutcome::Approve, true, None).is_ok());
        assert!(default.check(DecisionOutcome::DontKnow, true, None).is_ok());
    }

    #[test]
    fn privileged_approvals_can_need_a_reason_while_others_do_not() {
        let rules = rules(vec![ReasonRequired::PrivilegedApprove]);
        assert!(rules.check(DecisionOutcome::Approve, true, None).is_err());
        assert!(rules.check(DecisionOutcome::Approve, false, None).is_ok());
        assert!(rules.check(DecisionOutcome::Revoke, true, None).is_ok());
        let none = rules_none();
        assert!(none.check(DecisionOutcome::Revoke, true, None).is_ok());
    }

    fn rules_none() -> ReasonRules {
        rules(Vec::new())
    }
}
