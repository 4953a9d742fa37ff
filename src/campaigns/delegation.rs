//! Delegation: a reviewer hands their undecided items to someone else (from the review page),
//! or an admin moves them (`attest campaign reassign`), always with a reason that is kept in
//! the `items.reassigned` event. The new reviewer must be an active person of the source's
//! current snapshot with an email address (a review is never sent outside the directory this
//! way), and the independence rules hold: an item the new reviewer holds, or that belongs to
//! someone who reviews them, stays where it was and is counted as not moved.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::campaigns::model::{campaign, reviewer, reviewers_of};
use crate::campaigns::reassign::{
    ReassignReason, Reassigned, Reassignment, Selection, Target, reassign,
};
use crate::campaigns::reviewers::{Found, find_person};
use crate::db::schema::campaigns;
use crate::db::{DbConnection, write_tx};
use crate::decisions::AuthContext;
use crate::decisions::record::check_may_decide;
use crate::directory::current_sync_run;
use crate::error::{Error, Result};
use crate::ledger::EventBatch;
use crate::notify::links::ensure_link_still_valid;

/// Longest reason kept with a delegation.
pub const MAX_REASON_CHARS: usize = 500;

/// Who asks for the move.
#[derive(Debug, Clone, Copy)]
pub enum DelegatedBy<'a> {
    /// The reviewer themself, through their review link (checked again in the transaction).
    Reviewer(&'a AuthContext),
    /// An admin at the command line; the name goes into the evidence as the actor.
    Admin(&'a str),
}

/// A delegation to carry out.
#[derive(Debug, Clone, Copy)]
pub struct Delegation<'a> {
    pub campaign_id: &'a str,
    /// The reviewer whose undecided items move.
    pub from_reviewer_id: &'a str,
    /// The new reviewer: an email address or login of the directory.
    pub to: &'a str,
    pub reason: &'a str,
    pub by: DelegatedBy<'a>,
}

/// Moves the reviewer's undecided items to the named person; returns what moved.
pub fn delegate(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    delegation: &Delegation<'_>,
) -> Result<Reassigned> {
    let reason = delegation.reason.trim();
    if reason.is_empty() {
        return Err(Error::BadRequest(
            "say why these accesses go to someone else".into(),
        ));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(Error::BadRequest(format!(
            "the reason is longer than {MAX_REASON_CHARS} characters"
        )));
    }
    let to = delegation.to.trim();
    let (campaign_id, from) = (delegation.campaign_id, delegation.from_reviewer_id);
    write_tx(conn, |conn| {
        // Held against a close (PostgreSQL); then the items (in `reassign`), then the
        // reviewer (in `check_may_decide`), then the log: the order every decision takes.
        if let DbConnection::Postgres(pg) = conn {
            campaigns::table
                .find(campaign_id)
                .select(campaigns::id)
                .for_share()
                .first::<String>(pg)
                .optional()?;
        }
        let found = campaign(conn, campaign_id)?;
        if !found.is_open() {
            return Err(Error::Conflict(format!(
                "campaign {campaign_id} is closed; its items no longer move"
            )));
        }
        // A revoked link learns nothing of the directory: checked before any lookup (and
        // again, under the reviewer's lock, with the move).
        if let DelegatedBy::Reviewer(auth) = delegation.by
            && let Some(jti_sha256) = &auth.link_jti_sha256
        {
            ensure_link_still_valid(conn, jti_sha256, from, campaign_id, now)?;
        }
        let seq = current_sync_run(conn, &found.source)?
            .map(|run| run.seq)
            .ok_or_else(|| Error::Conflict(format!("source {} has no snapshot", found.source)))?;
        // One answer for "disabled", "gone" and "never there": the form tells no more about
        // the directory than that someone can or cannot take the accesses.
        let target = match find_person(conn, &found.source, seq, to)? {
            Found::Reviewer(candidate) if candidate.external_id.is_some() => candidate,
            _ => {
                return Err(Error::BadRequest(format!(
                    "{to} is not an active person with an email address in the directory"
                )));
            }
        };
        if target
            .email
            .eq_ignore_ascii_case(&reviewer(conn, from)?.email)
        {
            return Err(Error::BadRequest(
                "these accesses are already yours; name someone else".into(),
            ));
        }
        let (reason_kind, actor, auth) = match delegation.by {
            DelegatedBy::Reviewer(auth) => (
                ReassignReason::Delegated,
                format!("reviewer:{from}"),
                Some(auth),
            ),
            DelegatedBy::Admin(admin) => (ReassignReason::AdminReassigned, admin.to_string(), None),
        };
        let mut events = EventBatch::default();
        let job = Reassignment {
            campaign_id,
            selection: Selection::PendingOf(from),
            reason: reason_kind,
            target: Target::Person(&target),
            note: Some(reason),
            auth,
        };
        let moved = reassign(conn, now, &job, &mut events)?;
        // The link still works (it may have been revoked meanwhile): checked with the move.
        if let Some(auth) = auth {
            check_may_decide(conn, now, campaign_id, from, auth)?;
        }
        events.append_all(conn, now, &actor)?;
        Ok(moved)
    })
}

/// The reviewer of `campaign_id` with this email address (any case), for an admin's command.
pub fn reviewer_by_email(
    conn: &mut DbConnection,
    campaign_id: &str,
    email: &str,
) -> Result<String> {
    reviewers_of(conn, campaign_id)?
        .into_iter()
        .find(|r| r.email.eq_ignore_ascii_case(email.trim()))
        .map(|r| r.id)
        .ok_or_else(|| {
            Error::NotFound(format!(
                "nobody with the address {email} reviews in campaign {campaign_id}"
            ))
        })
}
