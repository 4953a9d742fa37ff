//! Email templates: one folder per kind of mail with `subject.txt.j2`, `body.txt.j2` and
//! `body.html.j2`, plus a shared `layout.html.j2`. The built-in copies are compiled into the
//! binary; a file of the same name under `mail.templates_dir` overrides it. HTML templates are
//! auto-escaped; text templates are not (they are never interpreted as markup).

use std::path::{Path, PathBuf};

use minijinja::{AutoEscape, Environment};
use serde::Serialize;

use crate::error::{Error, Result};

const BUILT_IN: &[(&str, &str)] = &[
    (
        "layout.html.j2",
        include_str!("../../email-templates/layout.html.j2"),
    ),
    (
        "items.txt.j2",
        include_str!("../../email-templates/items.txt.j2"),
    ),
    (
        "items.html.j2",
        include_str!("../../email-templates/items.html.j2"),
    ),
    (
        "review_request/subject.txt.j2",
        include_str!("../../email-templates/review_request/subject.txt.j2"),
    ),
    (
        "review_request/body.txt.j2",
        include_str!("../../email-templates/review_request/body.txt.j2"),
    ),
    (
        "review_request/body.html.j2",
        include_str!("../../email-templates/review_request/body.html.j2"),
    ),
    (
        "reminder/subject.txt.j2",
        include_str!("../../email-templates/reminder/subject.txt.j2"),
    ),
    (
        "reminder/body.txt.j2",
        include_str!("../../email-templates/reminder/body.txt.j2"),
    ),
    (
        "reminder/body.html.j2",
        include_str!("../../email-templates/reminder/body.html.j2"),
    ),
    (
        "escalation/subject.txt.j2",
        include_str!("../../email-templates/escalation/subject.txt.j2"),
    ),
    (
        "escalation/body.txt.j2",
        include_str!("../../email-templates/escalation/body.txt.j2"),
    ),
    (
        "escalation/body.html.j2",
        include_str!("../../email-templates/escalation/body.html.j2"),
    ),
    (
        "remediation/subject.txt.j2",
        include_str!("../../email-templates/remediation/subject.txt.j2"),
    ),
    (
        "remediation/body.txt.j2",
        include_str!("../../email-templates/remediation/body.txt.j2"),
    ),
    (
        "remediation/body.html.j2",
        include_str!("../../email-templates/remediation/body.html.j2"),
    ),
];

/// A rendered message, ready for the mailer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedMail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

pub struct MailTemplates {
    env: Environment<'static>,
}

impl std::fmt::Debug for MailTemplates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MailTemplates")
    }
}

fn is_html(name: &str) -> bool {
    name.ends_with(".html.j2") || name.ends_with(".html")
}

impl MailTemplates {
    /// Built-in templates, overridden by files under `override_dir` when it exists.
    pub fn load(override_dir: &Path) -> Result<MailTemplates> {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|name| {
            if is_html(name) {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_formatter(html_formatter);
        for (name, built_in) in BUILT_IN {
            let path: PathBuf = override_dir.join(name);
            let source = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => (*built_in).to_string(),
                Err(e) => {
                    return Err(Error::Template(format!(
                        "cannot read {}: {e}",
                        path.display()
                    )));
                }
            };
            env.add_template_owned(name.to_string(), source)
                .map_err(|e| Error::Template(format!("{name}: {e}")))?;
        }
        Ok(MailTemplates { env })
    }

    /// Renders the three parts of mail `kind` (e.g. `review_request`) with `context`.
    pub fn render<C: Serialize>(&self, kind: &str, context: &C) -> Result<RenderedMail> {
        let render = |part: &str| -> Result<String> {
            let name = format!("{kind}/{part}");
            self.env
                .get_template(&name)
                .and_then(|t| t.render(context))
                .map_err(|e| Error::Template(format!("{name}: {e}")))
        };
        Ok(RenderedMail {
            subject: single_line(&render("subject.txt.j2")?),
            text: render("body.txt.j2")?,
            html: render("body.html.j2")?,
        })
    }
}

/// HTML escaping of `& < > " '` only: enough for element content and quoted attributes, and
/// it leaves URLs readable (minijinja's default also escapes `/`, which some mail clients
/// show literally).
pub fn html_formatter(
    out: &mut minijinja::Output<'_>,
    state: &minijinja::State<'_, '_>,
    value: &minijinja::Value,
) -> std::result::Result<(), minijinja::Error> {
    if state.auto_escape() != AutoEscape::Html || value.is_safe() {
        return minijinja::escape_formatter(out, state, value);
    }
    let text = if value.is_none() || value.is_undefined() {
        String::new()
    } else {
        value.to_string()
    };
    let mut escaped = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    out.write_str(&escaped).map_err(|e| {
        minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "cannot write output")
            .with_source(e)
    })
}

/// Folds a rendered subject onto one line: no CR, LF or other control characters survive,
/// so names from the directory cannot inject headers.
pub fn single_line(text: &str) -> String {
    text.split(|c: char| c.is_control())
        .filter(|part| !part.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn context(name: &str) -> serde_json::Value {
        json!({
            "reviewer_name": name,
            "campaign_title": "Q4 <review>",
            "due_date": "2026-12-10",
            "review_url": "http://x/r/t",
            "item_count": 1,
            "listed": true,
            "items": [{
                "person_name": name, "person_login": "ann", "group_name": "admins",
                "description": name, "via": null,
                "privileged": true, "first_seen": "2026-01-01",
                "approve_url": "http://x/r/t?a", "revoke_url": "http://x/r/t?r"
            }],
            "groups": [],
            "privileged_items": [],
            "more_privileged": 0,
        })
    }

    #[test]
    fn html_is_escaped_and_text_is_literal() {
        let templates = MailTemplates::load(Path::new("/nonexistent")).unwrap();
        let mail = templates
            .render("review_request", &context("<b>Ann</b> {{x}}"))
            .unwrap();
        assert!(
            mail.html.contains("&lt;b&gt;Ann&lt;/b&gt;"),
            "{}",
            mail.html
        );
        assert!(!mail.html.contains("<b>Ann</b>"));
        assert!(mail.text.contains("<b>Ann</b> {{x}}"));
    }

    #[test]
    fn subject_cannot_carry_line_breaks() {
        assert_eq!(single_line("a\r\nBcc: x@y\n"), "a Bcc: x@y");
    }
}
