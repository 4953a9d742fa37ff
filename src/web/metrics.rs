//! `GET /metrics` in the Prometheus text format, for an API token of an admin or auditor
//! (Prometheus sends it as `bearer_token`): the items of each open campaign by state and
//! whether it is overdue, the outbox by state, remediation tasks by state, and per
//! configured source how old its current snapshot is and whether its latest sync succeeded. Labels carry ids and names of
//! campaigns and sources only, never people.

use std::fmt::Write as _;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::auth::Role;
use crate::campaigns::lifecycle::list_campaigns;
use crate::db::time::from_db;
use crate::directory::snapshot::source_freshness;
use crate::notify::outbox::counts_by_state;
use crate::web::AppState;
use crate::web::staff::{Refused, bearer};

const ITEM_STATES: [&str; 4] = ["pending", "approved", "revoked", "no_response"];

/// A label value with `\`, `"` and line breaks escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
}

/// Prometheus metrics: campaign progress, the outbox, and how fresh each source is.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain"),
        (status = 401, description = "No valid API token", body = crate::web::api::ApiError),
    )
)]
pub async fn metrics(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    if let Err(refused) = bearer(&state, &request, &[Role::Admin, Role::Auditor]).await {
        return refused.response();
    }
    let sources: Vec<String> = state.config.sources.keys().cloned().collect();
    let read = state
        .db
        .run(move |conn| {
            let campaigns = list_campaigns(conn)?;
            let outbox = counts_by_state(conn)?;
            let remediation = crate::remediation::tasks::counts_by_state(conn)?;
            let sources = sources
                .iter()
                .map(|s| source_freshness(conn, s))
                .collect::<crate::error::Result<Vec<_>>>()?;
            Ok((campaigns, outbox, remediation, sources))
        })
        .await;
    let (campaigns, outbox, remediation, sources) = match read {
        Ok(read) => read,
        Err(e) => return Refused::Failed(e).response(),
    };
    let now = state.clock.now();
    let mut out = String::new();
    let open: Vec<_> = campaigns.iter().filter(|c| c.campaign.is_open()).collect();
    family(
        &mut out,
        "attest_campaign_items",
        "Review items of each open campaign by state.",
    );
    for c in &open {
        let counts = [c.pending, c.approved, c.revoked, c.no_response];
        for (state_name, count) in ITEM_STATES.iter().zip(counts) {
            let _ = writeln!(
                out,
                "attest_campaign_items{{campaign=\"{}\",definition=\"{}\",state=\"{state_name}\"}} {count}",
                label(&c.campaign.id),
                label(&c.campaign.definition),
            );
        }
    }
    family(
        &mut out,
        "attest_campaign_overdue",
        "1 when an open campaign is past its due date with undecided items.",
    );
    for c in &open {
        let overdue = c.pending > 0 && from_db(c.campaign.due_at) < now;
        let _ = writeln!(
            out,
            "attest_campaign_overdue{{campaign=\"{}\",definition=\"{}\"}} {}",
            label(&c.campaign.id),
            label(&c.campaign.definition),
            u8::from(overdue)
        );
    }
    family(
        &mut out,
        "attest_outbox_messages",
        "Outbox messages by state.",
    );
    for (state_name, count) in &outbox {
        let _ = writeln!(
            out,
            "attest_outbox_messages{{state=\"{}\"}} {count}",
            label(state_name)
        );
    }
    family(
        &mut out,
        "attest_remediation_tasks",
        "Remediation tasks by state (failed, still_present, regranted and blocked need attention).",
    );
    for (state_name, count) in &remediation {
        let _ = writeln!(
            out,
            "attest_remediation_tasks{{state=\"{}\"}} {count}",
            label(state_name)
        );
    }
    family(
        &mut out,
        "attest_source_snapshot_age_seconds",
        "Seconds since the sync whose snapshot is current finished (absent: never synced).",
    );
    for s in &sources {
        if let Some(finished) = s.current_finished_at {
            let age = (now - from_db(finished)).num_seconds().max(0);
            let _ = writeln!(
                out,
                "attest_source_snapshot_age_seconds{{source=\"{}\"}} {age}",
                label(&s.source)
            );
        }
    }
    family(
        &mut out,
        "attest_source_last_sync_succeeded",
        "1 when the source's latest finished sync succeeded, 0 when it failed.",
    );
    for s in &sources {
        if let Some(status) = &s.latest_status {
            let _ = writeln!(
                out,
                "attest_source_last_sync_succeeded{{source=\"{}\"}} {}",
                label(&s.source),
                u8::from(status == "succeeded")
            );
        }
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
