//! Demo-only pages (served when `demo.enabled`): a mailbox listing the messages the file
//! mailer wrote, so a newcomer can open a digest and click into a review without any mail
//! server. Never enabled in a real deployment.

use std::path::PathBuf;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Serialize;

use crate::web::AppState;
use crate::web::pages::page_headers;

#[derive(Serialize)]
struct MailSummary {
    file: String,
    to: String,
    subject: String,
}

pub async fn index() -> HttpResponse {
    HttpResponse::Found()
        .insert_header(("Location", "/demo/mail"))
        .finish()
}

fn parse(path: &PathBuf) -> Option<mail_parser::Message<'static>> {
    let raw = std::fs::read(path).ok()?;
    mail_parser::MessageParser::default()
        .parse(&raw)
        .map(|m| m.into_owned())
}

fn mail_dir(state: &AppState) -> PathBuf {
    state.config.mail.file_dir.clone()
}

pub async fn mailbox(state: web::Data<AppState>) -> HttpResponse {
    let dir = mail_dir(&state);
    let listed = web::block(move || {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "eml") {
                continue;
            }
            let Some(message) = parse(&path) else {
                continue;
            };
            let to = message
                .to()
                .and_then(|a| a.first())
                .map(|a| match (a.name(), a.address()) {
                    (Some(n), Some(e)) => format!("{n} <{e}>"),
                    (None, Some(e)) => e.to_string(),
                    _ => String::new(),
                })
                .unwrap_or_default();
            out.push(MailSummary {
                file: entry.file_name().to_string_lossy().to_string(),
                to,
                subject: message.subject().unwrap_or_default().to_string(),
            });
        }
        out.sort_by(|a, b| a.to.cmp(&b.to));
        out
    })
    .await
    .unwrap_or_default();
    state.pages.render(
        StatusCode::OK,
        "demo_mail.html",
        minijinja::context! { messages => listed },
    )
}

pub async fn message(state: web::Data<AppState>, file: web::Path<String>) -> HttpResponse {
    let name = file.into_inner();
    let valid = name.ends_with(".eml")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if !valid {
        return state
            .pages
            .message(StatusCode::NOT_FOUND, "Not found", "No such demo message.");
    }
    let path = mail_dir(&state).join(&name);
    let html =
        web::block(move || parse(&path).and_then(|m| m.body_html(0).map(|h| h.into_owned())))
            .await
            .ok()
            .flatten();
    match html {
        // The body is attest's own rendered (escaped) template.
        Some(body) => page_headers(HttpResponse::Ok())
            .insert_header((
                "Content-Security-Policy",
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
            ))
            .body(body),
        None => state
            .pages
            .message(StatusCode::NOT_FOUND, "Not found", "No such demo message."),
    }
}
