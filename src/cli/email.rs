//! `attest email preview KIND`: prints a digest mail rendered with sample data (subject and
//! text part, or the HTML part), with the configured template overrides.

use attest::config::Config;
use attest::notify::MailTemplates;
use attest::notify::preview::preview;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum EmailCommand {
    /// Render review_request, reminder or escalation with sample data.
    Preview {
        kind: String,
        /// Undecided accesses in the sample (above 50 the digest summarises).
        #[arg(long, default_value_t = 6)]
        items: usize,
        /// Print the HTML part instead of the subject and text part.
        #[arg(long)]
        html: bool,
    },
}

pub fn run(config: &Config, action: &EmailCommand) -> anyhow::Result<()> {
    let EmailCommand::Preview { kind, items, html } = action;
    let templates = MailTemplates::load(&config.mail.templates_dir)?;
    let mail = preview(&templates, kind, *items)?;
    if *html {
        print!("{}", mail.html);
    } else {
        println!("Subject: {}\n\n{}", mail.subject, mail.text);
    }
    Ok(())
}
