//! `attest email preview KIND`: any digest template rendered with sample data through the
//! same assembly as real mail (and the same overrides from `mail.templates_dir`), so that an
//! admin can check a template before a campaign sends it.

use chrono::{TimeZone, Utc};

use crate::campaigns::model::{ITEM_PENDING, ReviewItem};
use crate::db::time::to_db;
use crate::error::{Error, Result};
use crate::notify::digest::{DigestHeader, assemble_digest};
use crate::notify::outbox::DIGEST_KINDS;
use crate::notify::templates::{MailTemplates, RenderedMail};

const SAMPLE_GROUPS: [(&str, &str, bool); 4] = [
    ("prod-admins", "Production administrators", true),
    ("vpn-users", "Remote access VPN", false),
    ("jira-users", "Issue tracker", false),
    ("finance-reports", "Monthly finance reports (read)", false),
];
const SAMPLE_PEOPLE: [(&str, &str); 5] = [
    ("Dave Dunn", "dave"),
    ("Erin Evans", "erin"),
    ("Frank Fischer", "frank"),
    ("Grace Green", "grace"),
    ("Heidi Hall", "heidi"),
];

/// `kind`'s mail for a reviewer with `items` undecided accesses of sample people and groups.
pub fn preview(templates: &MailTemplates, kind: &str, items: usize) -> Result<RenderedMail> {
    if !DIGEST_KINDS.contains(&kind) {
        return Err(Error::BadRequest(format!(
            "unknown mail `{kind}`; one of: {}",
            DIGEST_KINDS.join(", ")
        )));
    }
    let first_seen = to_db(
        Utc.with_ymd_and_hms(2026, 10, 1, 9, 0, 0)
            .single()
            .unwrap_or_default(),
    );
    let pending: Vec<ReviewItem> = (0..items)
        .map(|n| {
            let (group, _, privileged) = SAMPLE_GROUPS[n % SAMPLE_GROUPS.len()];
            let (name, login) = SAMPLE_PEOPLE[(n / SAMPLE_GROUPS.len()) % SAMPLE_PEOPLE.len()];
            ReviewItem {
                id: format!("sample-{n}"),
                campaign_id: "sample-campaign".into(),
                reviewer_id: "sample-reviewer".into(),
                routing: "manager".into(),
                identity_external_id: login.into(),
                identity_login: login.into(),
                identity_name: name.into(),
                identity_email: Some(format!("{login}@example.com")),
                identity_status: "active".into(),
                entitlement_external_id: group.into(),
                entitlement_name: group.into(),
                entitlement_dn: format!("cn={group},ou=groups,dc=example,dc=com"),
                privileged,
                via: (n % 3 == 2).then(|| "engineering".to_string()),
                granted_since: first_seen,
                stage: 1,
                state: ITEM_PENDING.into(),
                decided_at: None,
                no_response_outcome: None,
                approved_until: None,
                expired_at: None,
            }
        })
        .collect();
    let header = DigestHeader {
        reviewer_name: "Bob Baker",
        campaign_title: "Q4 access review",
        due_date: "2026-12-15".into(),
        review_url: "https://attest.example.com/r/SAMPLE-LINK",
    };
    let context = assemble_digest(&header, pending, |group| {
        SAMPLE_GROUPS
            .iter()
            .find(|(name, ..)| *name == group)
            .map(|(_, description, _)| description.to_string())
    });
    templates.render(kind, &context)
}
