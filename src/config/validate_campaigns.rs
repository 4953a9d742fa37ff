//! Checks of one campaign definition that serde cannot express: reminders, escalation and
//! the close policy against the campaign's length, the reviewer chains (of the definition or
//! of each stage) with the people they need, and the stages' lengths. Each problem names its
//! key.

use super::{CampaignDefinition, ChainStep};
use crate::error::ConfigProblem;

/// Reminders, escalation and the close policy of one campaign definition.
pub(super) fn follow_up_problems(key: &str, definition: &CampaignDefinition) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    let duration = definition.duration_days;
    for days in &definition.reminders {
        if *days == 0 || *days >= duration {
            problems.push(ConfigProblem::new(
                &format!("{key}.reminders"),
                format!(
                    "{days} is not between 1 and {} (days before the due date of a \
                     {duration}-day campaign)",
                    duration.saturating_sub(1)
                ),
            ));
        }
    }
    if let Some(days) = definition.escalate_after_days
        && (days == 0 || days >= duration)
    {
        problems.push(ConfigProblem::new(
            &format!("{key}.escalate_after_days"),
            format!(
                "{days} is not between 1 and {} (days after opening, before the due date)",
                duration.saturating_sub(1)
            ),
        ));
    }
    let share = definition.max_auto_revoke_share;
    if !(0.0..=1.0).contains(&share) {
        problems.push(ConfigProblem::new(
            &format!("{key}.max_auto_revoke_share"),
            format!("{share} is not a share between 0 and 1 (0.2 = a fifth of the items)"),
        ));
    }
    problems
}

/// The reviewer chains (of the definition or of each stage) and the people they name.
pub(super) fn chain_problems(key: &str, definition: &CampaignDefinition) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    let chains: Vec<(String, &Vec<ChainStep>)> = if definition.stages.is_empty() {
        vec![(format!("{key}.reviewer_chain"), &definition.reviewer_chain)]
    } else {
        definition
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    format!("{key}.stages[{i}].reviewer_chain"),
                    &s.reviewer_chain,
                )
            })
            .collect()
    };
    for (chain_key, chain) in &chains {
        for (i, step) in chain.iter().enumerate() {
            if chain[..i].contains(step) {
                problems.push(ConfigProblem::new(
                    chain_key,
                    format!("`{}` is named twice", step.as_str()),
                ));
            }
        }
    }
    problems.extend(stage_problems(key, definition));
    let in_any = |step: ChainStep| chains.iter().any(|(_, c)| c.contains(&step));
    let names_named = in_any(ChainStep::Named);
    if names_named && definition.named_reviewers.is_empty() {
        problems.push(ConfigProblem::new(
            &format!("{key}.named_reviewers"),
            "reviewer_chain has `named` but nobody is named here",
        ));
    }
    if !names_named && !definition.named_reviewers.is_empty() {
        problems.push(ConfigProblem::new(
            &format!("{key}.named_reviewers"),
            "is set but reviewer_chain has no `named`: add it where they come in the chain",
        ));
    }
    if !in_any(ChainStep::Owner) && !definition.group_owners.is_empty() {
        problems.push(ConfigProblem::new(
            &format!("{key}.group_owners"),
            "is set but reviewer_chain has no `owner`: add it where owners come in the chain",
        ));
    }
    problems
}

/// An off-cycle review's reference definition.
pub(super) fn new_access_problems(
    key: &str,
    definition: &CampaignDefinition,
    definitions: &std::collections::BTreeMap<String, CampaignDefinition>,
) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    let Some(since) = &definition.new_since else {
        return problems;
    };
    if !definition.only_new_access {
        problems.push(ConfigProblem::new(
            &format!("{key}.new_since"),
            "is set but only_new_access is not: set only_new_access = true for an off-cycle \
             review of new access",
        ));
    }
    match definitions.get(since) {
        None => problems.push(ConfigProblem::new(
            &format!("{key}.new_since"),
            format!("`{since}` is not a campaign definition"),
        )),
        Some(other) if other.source != definition.source => problems.push(ConfigProblem::new(
            &format!("{key}.new_since"),
            format!("`{since}` reviews another source ({})", other.source),
        )),
        Some(_) => {}
    }
    problems
}

/// The stages' lengths against the campaign's.
fn stage_problems(key: &str, definition: &CampaignDefinition) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    let Some((last, earlier)) = definition.stages.split_last() else {
        return problems;
    };
    if definition.reviewer_chain != vec![ChainStep::Manager] {
        problems.push(ConfigProblem::new(
            &format!("{key}.reviewer_chain"),
            "is set together with stages: give each stage its own reviewer_chain",
        ));
    }
    let mut total = 0;
    for (i, stage) in earlier.iter().enumerate() {
        match stage.days {
            Some(days) if days > 0 => total += days,
            _ => problems.push(ConfigProblem::new(
                &format!("{key}.stages[{i}].days"),
                "how many days this stage lasts (at least 1) is needed for every stage but the \
                 last",
            )),
        }
    }
    if last.days.is_some() {
        problems.push(ConfigProblem::new(
            &format!("{key}.stages[{}].days", earlier.len()),
            "the last stage lasts until the due date: remove its days",
        ));
    }
    if total >= definition.duration_days {
        problems.push(ConfigProblem::new(
            &format!("{key}.stages"),
            format!(
                "the stages before the last take {total} days, not less than duration_days ({})",
                definition.duration_days
            ),
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::{chain_problems, follow_up_problems};
    use crate::config::{CampaignDefinition, ChainStep};

    #[test]
    fn stages_need_their_days_within_the_campaign() {
        use crate::config::StageDefinition;
        let stage = |days: Option<u32>| StageDefinition {
            reviewer_chain: vec![ChainStep::Manager],
            days,
        };
        let mut definition = CampaignDefinition::for_source("corp", vec!["it@example.com".into()]);
        definition.stages = vec![stage(Some(5)), stage(None)];
        assert!(chain_problems("campaigns.q", &definition).is_empty());
        definition.stages = vec![stage(None), stage(Some(20)), stage(Some(3))];
        let keys: Vec<String> = chain_problems("campaigns.q", &definition)
            .iter()
            .map(|p| {
                p.to_string()
                    .split(':')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        assert_eq!(
            keys,
            [
                "campaigns.q.stages[0].days",
                "campaigns.q.stages[2].days",
                "campaigns.q.stages"
            ]
        );
    }

    #[test]
    fn a_reviewer_chain_and_the_people_it_needs_are_checked_together() {
        let mut definition = CampaignDefinition::for_source("corp", vec!["it@example.com".into()]);
        assert!(chain_problems("campaigns.q", &definition).is_empty());
        definition.reviewer_chain = vec![ChainStep::Named, ChainStep::Manager, ChainStep::Named];
        definition
            .group_owners
            .insert("prod-admins".into(), "alice".into());
        let problems: Vec<String> = chain_problems("campaigns.q", &definition)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("campaigns.q.reviewer_chain"));
        assert!(problems[1].starts_with("campaigns.q.named_reviewers"));
        assert!(problems[2].starts_with("campaigns.q.group_owners"));
    }

    #[test]
    fn reminders_escalation_and_share_outside_the_campaign_name_their_key() {
        let mut definition = CampaignDefinition::for_source("corp", vec!["it@example.com".into()]);
        assert!(follow_up_problems("campaigns.q", &definition).is_empty());
        definition.reminders = vec![7, 0, 14];
        definition.escalate_after_days = Some(14);
        definition.max_auto_revoke_share = 1.5;
        let keys: Vec<String> = follow_up_problems("campaigns.q", &definition)
            .iter()
            .map(|p| {
                p.to_string()
                    .split(':')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        assert_eq!(
            keys,
            [
                "campaigns.q.reminders",
                "campaigns.q.reminders",
                "campaigns.q.escalate_after_days",
                "campaigns.q.max_auto_revoke_share"
            ]
        );
    }
}
