//! The mail to IT listing a campaign's revoked accesses that attest does not remove by itself
//! (`mode = "manual"` sources with `remediation.mail_to`). It is rendered when sent, from the
//! tasks still waiting then, so a task IT closed meanwhile is not asked for again; with none
//! left the mail is cancelled. It reads the remediation tasks' table directly: the remediation
//! module queues the mail and depends on notify, not the other way round.

use diesel::prelude::*;
use serde::Serialize;

use crate::campaigns::model::campaign;
use crate::db::DbConnection;
use crate::db::schema::{remediation_tasks, review_items};
use crate::directory::effective::VIA_SEPARATOR;
use crate::error::Result;

/// Tasks listed in one mail, at most; the rest are counted.
pub const LISTED_TASKS: i64 = 200;

#[derive(Debug, Clone, Serialize)]
pub struct NoticeTask {
    pub id: String,
    pub person: String,
    pub group: String,
    pub via: Option<String>,
    /// The group to remove the person from: the last group of `via`, or `group`.
    pub holder: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RemediationNotice {
    pub campaign_id: String,
    pub campaign_title: String,
    pub source: String,
    pub task_count: i64,
    pub tasks: Vec<NoticeTask>,
    pub more: i64,
}

/// The notice for `campaign_id`'s pending manual tasks; `None` when none is left.
pub fn remediation_notice(
    conn: &mut DbConnection,
    campaign_id: &str,
) -> Result<Option<RemediationNotice>> {
    let found = campaign(conn, campaign_id)?;
    let waiting = remediation_tasks::table
        .filter(remediation_tasks::campaign_id.eq(campaign_id))
        .filter(remediation_tasks::mode.eq("manual"))
        .filter(remediation_tasks::state.eq("pending"));
    let task_count: i64 = waiting.count().get_result(conn)?;
    if task_count == 0 {
        return Ok(None);
    }
    let rows: Vec<(String, String, String, Option<String>, String)> = waiting
        .inner_join(review_items::table)
        .order((
            review_items::identity_login.asc(),
            review_items::entitlement_name.asc(),
        ))
        .limit(LISTED_TASKS)
        .select((
            remediation_tasks::id,
            review_items::identity_login,
            review_items::entitlement_name,
            review_items::via,
            remediation_tasks::reason,
        ))
        .load(conn)?;
    let tasks: Vec<NoticeTask> = rows
        .into_iter()
        .map(|(id, person, group, via, reason)| NoticeTask {
            holder: via
                .as_deref()
                .and_then(|v| v.rsplit(VIA_SEPARATOR).next())
                .unwrap_or(&group)
                .to_string(),
            id,
            person,
            group,
            via,
            reason: match reason.as_str() {
                "no_response" => "nobody answered; the policy revokes".into(),
                "expired" => "an approval until a date expired".into(),
                _ => "the reviewer revoked it".into(),
            },
        })
        .collect();
    Ok(Some(RemediationNotice {
        campaign_id: found.id,
        campaign_title: found.title,
        source: found.source,
        more: task_count - tasks.len() as i64,
        task_count,
        tasks,
    }))
}
