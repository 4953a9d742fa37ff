//! `attest admin link`: a one-time sign-in link to the console for a staff member, where no
//! identity provider is configured (or before it is). The link is printed once.

use attest::auth::Role;
use attest::auth::sign_in_links::{DEFAULT_LINK_MINUTES, create_link};
use attest::clock::Clock;
use attest::config::Config;
use attest::db::Database;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Print a one-time link that signs a staff member in to the console.
    Link {
        /// admin or auditor.
        #[arg(long)]
        role: String,
        /// The staff member (created with the role when new).
        #[arg(long, value_name = "EMAIL")]
        email: String,
        /// Minutes until the link stops working (1 to 1440).
        #[arg(long, default_value_t = DEFAULT_LINK_MINUTES)]
        minutes: i64,
    },
}

pub fn run(
    db: &Database,
    clock: &dyn Clock,
    config: &Config,
    action: AdminCommand,
) -> anyhow::Result<()> {
    let AdminCommand::Link {
        role,
        email,
        minutes,
    } = action;
    let base = config.server.public_url.trim_end_matches('/');
    if base.is_empty() {
        anyhow::bail!("set server.public_url: the link must name the address staff reach");
    }
    let role: Role = role.parse()?;
    let mut conn = db.conn()?;
    let link = create_link(&mut conn, clock.now(), &email, role, minutes, "cli")?;
    println!(
        "one-time {role} sign-in link for {}, valid until {} (it works once):",
        email.trim().to_lowercase(),
        link.expires_at.format("%Y-%m-%d %H:%M UTC")
    );
    println!("{base}/auth/link?t={}", link.secret);
    Ok(())
}
