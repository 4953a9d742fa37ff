//! Server-rendered pages: templates compiled into the binary and rendered with minijinja,
//! HTML auto-escaped, with the security headers every page carries.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder};
use minijinja::{AutoEscape, Environment};
use serde::Serialize;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("review.html", include_str!("templates/review.html")),
    ("message.html", include_str!("templates/message.html")),
    ("demo_mail.html", include_str!("templates/demo_mail.html")),
    ("console.html", include_str!("templates/console.html")),
    ("staff_link.html", include_str!("templates/staff_link.html")),
    (
        "console_bar.html",
        include_str!("templates/console_bar.html"),
    ),
    (
        "console_campaign.html",
        include_str!("templates/console_campaign.html"),
    ),
    (
        "console_remediation.html",
        include_str!("templates/console_remediation.html"),
    ),
    (
        "console_source_test.html",
        include_str!("templates/console_source_test.html"),
    ),
    (
        "console_outbox.html",
        include_str!("templates/console_outbox.html"),
    ),
    (
        "console_sources.html",
        include_str!("templates/console_sources.html"),
    ),
    (
        "console_staff.html",
        include_str!("templates/console_staff.html"),
    ),
];

pub const APP_CSS: &str = include_str!("static/app.css");

pub struct Pages {
    env: Environment<'static>,
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pages")
    }
}

impl Pages {
    pub fn new() -> Result<Pages, minijinja::Error> {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        env.set_formatter(crate::notify::templates::html_formatter);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        Ok(Pages { env })
    }

    /// Renders `template` with the page headers; a rendering failure becomes a plain 500.
    pub fn render<C: Serialize>(
        &self,
        status: StatusCode,
        template: &str,
        context: C,
    ) -> HttpResponse {
        match self
            .env
            .get_template(template)
            .and_then(|t| t.render(context))
        {
            Ok(body) => page_headers(HttpResponse::build(status)).body(body),
            Err(e) => {
                tracing::error!(template, error = %e, "page rendering failed");
                page_headers(HttpResponse::InternalServerError()).body("internal error")
            }
        }
    }

    pub fn message(&self, status: StatusCode, heading: &str, message: &str) -> HttpResponse {
        self.render(
            status,
            "message.html",
            minijinja::context! { heading => heading, message => message },
        )
    }
}

/// Headers for pages that may show review links or personal data: never cached, never
/// framed, no referrer (review URLs carry tokens), scripts off, forms only to this site.
pub fn page_headers(mut builder: HttpResponseBuilder) -> HttpResponseBuilder {
    builder
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ));
    builder
}
