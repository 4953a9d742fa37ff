//! `attest campaign ...`: open, list, close (with a dry run of what the no-response policy
//! would do), move a reviewer's undecided accesses to someone else, and revoke links, printed
//! for a terminal.

use attest::campaigns::delegation::{DelegatedBy, Delegation, delegate, reviewer_by_email};
use attest::campaigns::model::campaign;
use attest::campaigns::{
    ClosePreview, CloseRules, close_campaign, list_campaigns, preview_close, start_campaign,
};
use attest::clock::Clock;
use attest::config::Config;
use attest::db::Database;
use attest::jobs::scheduler::next_openings;
use attest::notify::revocation::revoke_campaign_links;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum CampaignCommand {
    /// Open a campaign of DEFINITION (a key under [campaigns]).
    Start {
        definition: String,
        /// Start an ad-hoc campaign whose period begins now (default: the current quarter).
        #[arg(long)]
        now: bool,
    },
    /// List campaigns with their progress.
    List,
    /// Close a campaign: later decisions are refused, and every access nobody decided gets
    /// the definition's no-response outcome (flag, keep or revoke).
    Close {
        id: String,
        /// Print what closing would do (the outcome of each undecided access) and change
        /// nothing.
        #[arg(long)]
        dry_run: bool,
        /// Revoke even when more accesses than `max_auto_revoke_share` nobody reviewed would
        /// be revoked.
        #[arg(long)]
        confirm_revocations: bool,
    },
    /// Move a reviewer's undecided accesses to someone else in the directory (a reviewer on
    /// leave, the wrong manager). Recorded with the reason; the new reviewer gets a digest.
    Reassign {
        /// Campaign id (see `attest campaign list`).
        campaign: String,
        /// The reviewer whose undecided accesses move (their email address).
        #[arg(long, value_name = "EMAIL")]
        from: String,
        /// The new reviewer: an email address or login of an active person in the directory.
        #[arg(long, value_name = "PERSON")]
        to: String,
        /// Why; kept in the evidence.
        #[arg(long)]
        reason: String,
    },
    /// Make a campaign's review links stop working (all of them, or one reviewer's).
    RevokeLinks {
        /// Campaign id (see `attest campaign list`).
        campaign: String,
        /// Only the links of the reviewer with this email address.
        #[arg(long, value_name = "EMAIL")]
        reviewer: Option<String>,
        /// Then send each reviewer who still has undecided items a new digest with a new link.
        #[arg(long)]
        resend: bool,
    },
}

pub fn run(
    config: &Config,
    db: &Database,
    clock: &dyn Clock,
    action: CampaignCommand,
) -> anyhow::Result<()> {
    match action {
        CampaignCommand::Start { definition, now } => {
            let started = start_campaign(db, clock, config, &definition, now, "cli")?;
            println!(
                "opened campaign {} ({}): {} items for {} reviewers, due {}",
                started.campaign.id,
                started.campaign.title,
                started.items,
                started.reviewers,
                started.campaign.due_at.format("%Y-%m-%d")
            );
        }
        CampaignCommand::List => {
            let mut conn = db.conn()?;
            let all = list_campaigns(&mut conn)?;
            for (definition, next) in next_openings(config, clock.now()) {
                let schedule = &config.campaigns[&definition];
                match next {
                    Some(at) => println!(
                        "{definition}: next opens {} ({}, {}){}",
                        at.format("%Y-%m-%d %H:%M UTC"),
                        schedule.schedule,
                        schedule.timezone,
                        if config.scheduler.enabled {
                            ""
                        } else {
                            " - the scheduler is off in this configuration"
                        }
                    ),
                    None => println!("{definition}: opens only with `attest campaign start`"),
                }
            }
            if all.is_empty() {
                println!("no campaigns yet");
            }
            for s in all {
                println!(
                    "{}  {:<7} {:<30} opened {}{}  due {}  {}/{} decided ({} approved, {} \
                     revoked{}){}",
                    s.campaign.id,
                    s.campaign.state,
                    s.campaign.title,
                    s.campaign.opened_at.format("%Y-%m-%d"),
                    if s.campaign.late { " (late)" } else { "" },
                    s.campaign.due_at.format("%Y-%m-%d"),
                    s.approved + s.revoked,
                    s.items,
                    s.approved,
                    s.revoked,
                    match s.no_response {
                        0 => String::new(),
                        n => format!(", {n} without answer"),
                    },
                    match (s.campaign.is_open(), s.campaign.close_held_at) {
                        (true, Some(_)) => format!(
                            "  - close held: check with `attest campaign close {} --dry-run`",
                            s.campaign.id
                        ),
                        _ => String::new(),
                    }
                );
            }
        }
        CampaignCommand::Close {
            id,
            dry_run,
            confirm_revocations,
        } => {
            let mut conn = db.conn()?;
            let mut rules = CloseRules::of(config, &campaign(&mut conn, &id)?);
            if confirm_revocations {
                rules = rules.confirmed();
            }
            if dry_run {
                print_close_preview(&preview_close(&mut conn, &id, &rules)?, &rules);
                return Ok(());
            }
            let s = close_campaign(&mut conn, clock.now(), &id, &rules, "cli")?;
            println!(
                "closed campaign {id}: {} approved, {} revoked, {} not reviewed ({})",
                s.approved,
                s.revoked,
                s.no_response,
                rules.no_response.as_str()
            );
        }
        CampaignCommand::Reassign {
            campaign,
            from,
            to,
            reason,
        } => {
            let mut conn = db.conn()?;
            let from_reviewer_id = reviewer_by_email(&mut conn, &campaign, &from)?;
            let delegation = Delegation {
                campaign_id: &campaign,
                from_reviewer_id: &from_reviewer_id,
                to: &to,
                reason: &reason,
                by: DelegatedBy::Admin("cli"),
            };
            let moved = delegate(&mut conn, clock.now(), &delegation)?;
            println!(
                "moved {} undecided access(es) of {from} to {to}; `attest serve` sends them a digest",
                moved.items
            );
            if moved.stuck > 0 {
                println!(
                    "{} access(es) stayed with {from}: {to} holds them, or their holder reviews {to}",
                    moved.stuck
                );
            }
        }
        CampaignCommand::RevokeLinks {
            campaign,
            reviewer,
            resend,
        } => {
            let mut conn = db.conn()?;
            let s = revoke_campaign_links(
                &mut conn,
                clock.now(),
                &campaign,
                reviewer.as_deref(),
                resend,
                "cli",
            )?;
            println!(
                "revoked {} working link(s) of {} reviewer(s) in campaign {campaign}",
                s.links, s.reviewers
            );
            if s.digests_cancelled > 0 {
                println!(
                    "cancelled {} digest(s) that had not been sent yet",
                    s.digests_cancelled
                );
            }
            if resend {
                println!(
                    "queued {} new digest(s); `attest serve` sends them",
                    s.digests_queued
                );
            } else {
                println!("those reviewers can no longer open the review; --resend sends new links");
            }
        }
    }
    Ok(())
}

fn print_close_preview(preview: &ClosePreview, rules: &CloseRules) {
    let s = &preview.summary;
    println!(
        "dry run: closing campaign {} now would leave {} approved, {} revoked by reviewers, and \
         {} nobody reviewed -> {}",
        s.campaign.id, s.approved, s.revoked, s.pending, preview.no_response
    );
    if preview.would_revoke > 0 {
        println!(
            "the no-response policy would revoke {} access(es):",
            preview.would_revoke
        );
        for (person, group) in &preview.would_revoke_listed {
            println!("  {person} in {group}");
        }
        let unlisted = preview.would_revoke - preview.would_revoke_listed.len() as i64;
        if unlisted > 0 {
            println!("  ... and {unlisted} more");
        }
    }
    if preview.needs_confirmation {
        println!(
            "that is more than max_auto_revoke_share ({}) of {} items: the close waits for \
             `attest campaign close {} --confirm-revocations`",
            rules.max_auto_revoke_share, s.items, s.campaign.id
        );
    }
    println!("nothing was changed");
}
