//! The access log: one line per request with the method, a path safe to log, the status and
//! the duration. Review links carry a bearer token in the path and item ids in the query, so
//! the path is rewritten before it is written anywhere: the segment after `/r/` becomes
//! `[token]`, any other segment too long to be a route name or an id becomes `[redacted]`,
//! and the query string is never logged. Other crates' debug output that can quote a request
//! path (actix-web's extractors do when a query does not parse) is dropped by
//! [`may_be_logged`], which the log subscriber applies whatever the configured level.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

/// Where request lines go, so that operators can filter them.
pub const TARGET: &str = "attest::http";

/// Longest path segment logged as is; ids (UUIDs) are 36 characters, tokens far longer.
const MAX_PLAIN_SEGMENT: usize = 40;

/// Longest path logged; the rest is cut (oversized URLs must not flood the log).
const MAX_LOGGED_PATH: usize = 200;

/// Paths not worth a line each (probes every few seconds).
const QUIET_PATHS: &[&str] = &["/healthz", "/readyz"];

/// Crates whose debug and trace messages may quote a request path.
const PATH_QUOTING_CRATES: &[&str] = &["actix_web", "actix_http", "actix_router"];

/// Whether an event may reach the log at all: debug and trace events of the crates that may
/// quote request paths never do.
pub fn may_be_logged(metadata: &tracing::Metadata<'_>) -> bool {
    *metadata.level() <= tracing::Level::INFO
        || !PATH_QUOTING_CRATES
            .iter()
            .any(|krate| metadata.target().starts_with(krate))
}

/// The path as it may appear in a log line: never a token, never a query string.
pub fn loggable_path(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut out = String::with_capacity(path.len().min(MAX_LOGGED_PATH));
    let mut after_review_prefix = false;
    for (index, segment) in path.split('/').enumerate() {
        if index > 0 {
            out.push('/');
        }
        if after_review_prefix && !segment.is_empty() {
            out.push_str("[token]");
        } else if segment.len() > MAX_PLAIN_SEGMENT {
            out.push_str("[redacted]");
        } else {
            out.push_str(segment);
        }
        // `/r/{token}`: the first non-empty segment after a leading `r` is a review token.
        after_review_prefix = index == 1 && segment == "r";
        if out.len() > MAX_LOGGED_PATH {
            let cut = (0..=MAX_LOGGED_PATH)
                .rev()
                .find(|i| out.is_char_boundary(*i))
                .unwrap_or(0);
            out.truncate(cut);
            out.push_str("...");
            break;
        }
    }
    out
}

/// Middleware (for `middleware::from_fn`) writing one line per request to [`TARGET`].
pub async fn log_request(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let quiet = QUIET_PATHS.contains(&request.path());
    let method = request.method().clone();
    let path = loggable_path(request.path());
    let response = next.call(request).await;
    if !quiet {
        let status = match &response {
            Ok(response) => response.status().as_u16(),
            Err(error) => error.as_response_error().status_code().as_u16(),
        };
        let duration_ms = started.elapsed().as_secs_f64() * 1_000.0;
        tracing::info!(
            target: TARGET,
            method = %method,
            path = %path,
            status,
            duration_ms = format_args!("{duration_ms:.1}"),
            "request"
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn tokens_ids_and_queries_are_removed() {
        assert_eq!(loggable_path("/r/eyJ.abc.def"), "/r/[token]");
        assert_eq!(loggable_path("/r/eyJ.abc.def/decide"), "/r/[token]/decide");
        assert_eq!(loggable_path("/r/t?item=1&intent=approve"), "/r/[token]");
        assert_eq!(loggable_path("/healthz"), "/healthz");
        let long = "x".repeat(41);
        assert_eq!(
            loggable_path(&format!("/other/{long}/y")),
            "/other/[redacted]/y"
        );
        let id = "0b7f0c7e-8a43-4b0b-9d55-3f2d7a1c9e21";
        assert_eq!(loggable_path(&format!("/api/{id}")), format!("/api/{id}"));
    }

    #[test]
    fn oversized_paths_are_cut() {
        let path = "/a".repeat(500);
        let logged = loggable_path(&path);
        assert!(logged.len() <= 203, "{}", logged.len());
        assert!(logged.ends_with("..."));
    }
}
