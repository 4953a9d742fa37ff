//! `attest token ...`: issue, list and revoke API tokens for staff (auditors downloading
//! evidence, admins), printed for a terminal. The secret is printed once, at issue.

use attest::auth::api_tokens::{DEFAULT_TOKEN_DAYS, list_tokens};
use attest::auth::{NewToken, Role, issue, revoke};
use attest::clock::Clock;
use attest::db::Database;
use clap::Subcommand;
use secrecy::ExposeSecret;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Issue a token to a staff member; the token is printed once and stored only as a hash.
    Create {
        /// admin or auditor (auditors list campaigns and download evidence, nothing else).
        #[arg(long)]
        role: String,
        /// The staff member it belongs to.
        #[arg(long, value_name = "EMAIL")]
        email: String,
        /// What it is for, e.g. "FY2026 SOC 2 audit".
        #[arg(long)]
        name: String,
        /// Days until it expires (1 to 366).
        #[arg(long, default_value_t = DEFAULT_TOKEN_DAYS)]
        days: i64,
    },
    /// List tokens (never their secrets).
    List,
    /// Make a token stop working at once.
    Revoke { id: String },
}

pub fn run(db: &Database, clock: &dyn Clock, action: TokenCommand) -> anyhow::Result<()> {
    let mut conn = db.conn()?;
    match action {
        TokenCommand::Create {
            role,
            email,
            name,
            days,
        } => {
            let role: Role = role.parse()?;
            let request = NewToken {
                name: &name,
                role,
                email: &email,
                days,
            };
            let issued = issue(&mut conn, clock.now(), &request, "cli")?;
            println!(
                "issued {role} token {} for {email}, valid until {}",
                issued.id,
                issued.expires_at.format("%Y-%m-%d %H:%M UTC")
            );
            println!("keep it now; it is not shown again:");
            println!("{}", issued.secret.expose_secret());
        }
        TokenCommand::List => {
            let tokens = list_tokens(&mut conn)?;
            if tokens.is_empty() {
                println!("no API tokens");
            }
            for t in tokens {
                let state = match (&t.revoked_at, &t.expires_at) {
                    (Some(at), _) => format!("revoked {at}"),
                    (None, Some(at)) => format!("expires {at}"),
                    (None, None) => "no expiry".into(),
                };
                println!(
                    "{}  {:<7}  {}  \"{}\"  {state}",
                    t.id, t.role, t.email, t.name
                );
            }
        }
        TokenCommand::Revoke { id } => {
            if revoke(&mut conn, clock.now(), &id, "cli")? {
                println!("revoked token {id}");
            } else {
                println!("token {id} was already revoked");
            }
        }
    }
    Ok(())
}
