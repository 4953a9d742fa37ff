//! Revoking review links. A link stops working as soon as its `link_tokens` row carries a
//! `revoked_at`, because every request re-checks that row; the reviewer then sees the same
//! "this link does not work" page as for any invalid link. Links are revoked by an admin (a
//! whole campaign, or one reviewer in it, optionally followed by a fresh digest), or, when
//! `links.revoke_superseded` is set, once a newer digest for the same reviewer and campaign
//! has been sent. Each revoked link writes one `link.revoked` event in the same transaction.
//! An admin revocation also cancels the reviewers' mail that has not gone yet, since sending
//! it would mint a new working link; the reviewer row lock (PostgreSQL) keeps a worker from
//! minting or delivering a link for that reviewer while the revocation runs.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use serde_json::json;

use crate::campaigns::model::{ITEM_PENDING, campaign};
use crate::db::schema::{link_tokens, review_items, reviewers};
use crate::db::time::to_db;
use crate::db::{DbConnection, write_tx};
use crate::error::{Error, Result};
use crate::ledger::{EventBatch, EventKind};
use crate::notify::links::lock_reviewer;
use crate::notify::outbox;

#[diesel::declare_sql_function]
extern "SQL" {
    /// SQL `lower()`, the same on SQLite and PostgreSQL for ASCII addresses.
    fn lower(text: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// Why links were revoked; recorded in each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationReason {
    /// An admin revoked them (a forwarded mail, a reviewer who left).
    Admin,
    /// A newer digest for the same reviewer and campaign was sent.
    Superseded,
    /// The directory shows the reviewer disabled or gone.
    ReviewerUnavailable,
}

impl RevocationReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Admin => "admin",
            RevocationReason::Superseded => "superseded",
            RevocationReason::ReviewerUnavailable => "reviewer_unavailable",
        }
    }
}

/// What an admin revocation did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RevocationSummary {
    /// Links that were working and now are not.
    pub links: usize,
    /// Reviewers in scope (all of the campaign's, or the one named).
    pub reviewers: usize,
    /// Digests that had not gone yet and now never will.
    pub digests_cancelled: usize,
    /// Fresh digests queued (with `resend`): reviewers with undecided items.
    pub digests_queued: usize,
}

/// Revokes the working links of `campaign_id` (or of the reviewer with `reviewer_email` in it).
/// With `resend`, each reviewer in scope who still has undecided items gets a new digest with
/// a new link; that needs an open campaign, and is checked before anything is revoked.
pub fn revoke_campaign_links(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    campaign_id: &str,
    reviewer_email: Option<&str>,
    resend: bool,
    actor: &str,
) -> Result<RevocationSummary> {
    let scope = LinkScope {
        campaign_id,
        reviewer_email,
        reason: RevocationReason::Admin,
    };
    revoke_links(conn, now, &scope, resend, actor)
}

/// Whose links a revocation covers, and why.
pub struct LinkScope<'a> {
    pub campaign_id: &'a str,
    /// One reviewer's (by address), or everyone's in the campaign.
    pub reviewer_email: Option<&'a str>,
    pub reason: RevocationReason,
}

/// Revokes the working links in `scope` and cancels their unsent digests; see
/// [`revoke_campaign_links`].
pub fn revoke_links(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    scope: &LinkScope<'_>,
    resend: bool,
    actor: &str,
) -> Result<RevocationSummary> {
    let (campaign_id, reviewer_email) = (scope.campaign_id, scope.reviewer_email);
    write_tx(conn, |conn| {
        let found = campaign(conn, campaign_id)?;
        if resend && !found.is_open() {
            return Err(Error::Conflict(format!(
                "campaign {campaign_id} is closed: its links can be revoked, but no new digest \
                 is sent (drop --resend)"
            )));
        }
        let mut in_scope = reviewers::table
            .filter(reviewers::campaign_id.eq(campaign_id))
            .select(reviewers::id)
            .into_boxed();
        if let Some(email) = reviewer_email {
            in_scope = in_scope.filter(lower(reviewers::email).eq(email.trim().to_lowercase()));
        }
        let reviewer_ids: Vec<String> = in_scope.order(reviewers::id.asc()).load(conn)?;
        if let (Some(email), true) = (reviewer_email, reviewer_ids.is_empty()) {
            return Err(Error::NotFound(format!(
                "nobody with the address {email} reviews in campaign {campaign_id}"
            )));
        }
        let mut summary = RevocationSummary {
            reviewers: reviewer_ids.len(),
            ..RevocationSummary::default()
        };
        for reviewer_id in &reviewer_ids {
            lock_reviewer(conn, reviewer_id, true)?;
        }
        let mut events = EventBatch::default();
        for reviewer_id in &reviewer_ids {
            summary.digests_cancelled += outbox::cancel_unsent(
                conn,
                campaign_id,
                reviewer_id,
                "cancelled: the reviewer's links were revoked",
                &mut events,
            )?;
            let active: Vec<String> = active_links(conn, now, campaign_id, reviewer_id)?
                .into_iter()
                .map(|(jti, _)| jti)
                .collect();
            summary.links += revoke(
                conn,
                now,
                (campaign_id, reviewer_id),
                &active,
                scope.reason,
                &mut events,
            )?;
        }
        if resend {
            for reviewer_id in &reviewer_ids {
                if has_pending_items(conn, reviewer_id)? {
                    outbox::enqueue_review_resend(
                        conn,
                        now,
                        campaign_id,
                        reviewer_id,
                        &mut events,
                    )?;
                    summary.digests_queued += 1;
                }
            }
        }
        events.append_all(conn, now, actor)?;
        Ok(summary)
    })
}

/// After a digest carrying the link `newer_jti_sha256` was sent: revokes the reviewer's
/// working links in that campaign that were issued before it (a link minted in the same
/// instant is left alone rather than risk revoking the newer one). Runs inside the caller's
/// transaction (the one recording the delivery), adding its events to `events`.
pub fn revoke_superseded(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    campaign_id: &str,
    reviewer_id: &str,
    newer_jti_sha256: &str,
    events: &mut EventBatch,
) -> Result<usize> {
    let Some(newer_issued_at) = link_tokens::table
        .find(newer_jti_sha256)
        .select(link_tokens::issued_at)
        .first::<chrono::NaiveDateTime>(conn)
        .optional()?
    else {
        return Ok(0);
    };
    let older: Vec<String> = active_links(conn, now, campaign_id, reviewer_id)?
        .into_iter()
        .filter(|(jti, issued_at)| jti != newer_jti_sha256 && *issued_at < newer_issued_at)
        .map(|(jti, _)| jti)
        .collect();
    revoke(
        conn,
        now,
        (campaign_id, reviewer_id),
        &older,
        RevocationReason::Superseded,
        events,
    )
}

/// (jti hash, issued at) of a reviewer's links that are neither revoked nor expired.
fn active_links(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    campaign_id: &str,
    reviewer_id: &str,
) -> Result<Vec<(String, chrono::NaiveDateTime)>> {
    Ok(link_tokens::table
        .filter(link_tokens::campaign_id.eq(campaign_id))
        .filter(link_tokens::reviewer_id.eq(reviewer_id))
        .filter(link_tokens::revoked_at.is_null())
        .filter(link_tokens::expires_at.gt(to_db(now)))
        .order(link_tokens::issued_at.asc())
        .select((link_tokens::jti_hash, link_tokens::issued_at))
        .load(conn)?)
}

fn revoke(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    (campaign_id, reviewer_id): (&str, &str),
    links: &[String],
    reason: RevocationReason,
    events: &mut EventBatch,
) -> Result<usize> {
    let mut revoked = 0;
    for jti_sha256 in links {
        // The null test keeps a concurrent revocation from being counted (or logged) twice.
        let changed = diesel::update(
            link_tokens::table
                .find(jti_sha256)
                .filter(link_tokens::revoked_at.is_null()),
        )
        .set(link_tokens::revoked_at.eq(Some(to_db(now))))
        .execute(conn)?;
        if changed == 0 {
            continue;
        }
        events.push(
            EventKind::LinkRevoked,
            Some(campaign_id),
            json!({
                "campaign": campaign_id,
                "reviewer": reviewer_id,
                "jti_sha256": jti_sha256,
                "reason": reason.as_str(),
            }),
        );
        revoked += 1;
    }
    Ok(revoked)
}

fn has_pending_items(conn: &mut DbConnection, reviewer_id: &str) -> Result<bool> {
    let pending: i64 = review_items::table
        .filter(review_items::reviewer_id.eq(reviewer_id))
        .filter(review_items::state.eq(ITEM_PENDING))
        .count()
        .get_result(conn)?;
    Ok(pending > 0)
}
