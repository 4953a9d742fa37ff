//! `population.json`: how the population under review was extracted (the campaign's scope,
//! and the sync run it was frozen from: server, bind identity, searches, counts, problems and
//! the hash of what the directory returned) and the campaign's counts, so that an auditor
//! reconciles the population with the items without asking anyone.

use diesel::prelude::*;
use serde_json::{Value, json};

use crate::campaigns::lifecycle::summarize;
use crate::campaigns::model::Campaign;
use crate::db::DbConnection;
use crate::db::schema::reviewers;
use crate::db::time::rfc3339;
use crate::directory::snapshot::{problems_of, sync_run};
use crate::error::Result;

/// What the pack itself lists, for the counts.
pub struct Listed {
    pub items: u64,
    pub decisions: u64,
    pub events: u64,
    pub events_after_checkpoint: i64,
}

/// The population document of `campaign`.
pub fn population_document(
    conn: &mut DbConnection,
    campaign: &Campaign,
    listed: &Listed,
) -> Result<Value> {
    let run = sync_run(conn, &campaign.sync_run_id)?;
    let problems = problems_of(conn, &run.id)?;
    let reviewer_count: i64 = reviewers::table
        .filter(reviewers::campaign_id.eq(&campaign.id))
        .count()
        .get_result(conn)?;
    let counts = summarize(conn, campaign.clone())?;
    let searches: Value = serde_json::from_str(&run.searches)?;
    let scope: Value = serde_json::from_str(&campaign.scope)?;
    Ok(json!({
        "campaign": {
            "id": campaign.id,
            "definition": campaign.definition,
            "title": campaign.title,
            "source": campaign.source,
            "state": campaign.state,
            "period_start": rfc3339(campaign.period_start),
            "opened_at": rfc3339(campaign.opened_at),
            "due_at": rfc3339(campaign.due_at),
            "closed_at": campaign.closed_at.map(rfc3339),
            "scope": scope,
        },
        "sync_run": {
            "id": run.id,
            "source": run.source,
            "run": run.seq,
            "server": run.server,
            "bind_identity": run.bind_identity,
            "page_size": run.page_size,
            "searches": searches,
            "started_at": rfc3339(run.started_at),
            "finished_at": run.finished_at.map(rfc3339),
            "status": run.status,
            "pages": run.pages,
            "entries": run.entries,
            "identities": run.identities,
            "entitlements": run.entitlements,
            "memberships": run.memberships,
            "grants": run.grants,
            "unresolved_members": run.unresolved_members,
            "cycles": run.cycles,
            "diff": run.diff(),
            "problems": problems,
            "raw_sha256": run.raw_sha256,
        },
        "counts": {
            "review_items": counts.items,
            "reviewers": reviewer_count,
            "approved": counts.approved,
            "revoked": counts.revoked,
            "pending": counts.pending,
            "no_response": counts.no_response,
            "items_listed": listed.items,
            "decisions": listed.decisions,
            "events_listed": listed.events,
            "events_after_checkpoint": listed.events_after_checkpoint,
        },
    }))
}
