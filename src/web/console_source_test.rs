//! "Test connection" on the console's sources page, for admins: connects, binds and reads a
//! source as a sync would (`attest source test` on the command line), and shows where it
//! read from, as whom, what it holds and every problem a sync would record. It writes
//! nothing: no sync run, no snapshot. It needs the session's CSRF token like every console
//! POST, since it makes the server connect out with the source's credentials.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::auth::Role;
use crate::directory::preview::preview_source;
use crate::directory::sync::Quiet;
use crate::error::Error;
use crate::web::AppState;
use crate::web::console::{failure, staff_view};
use crate::web::staff_sign_in::staff_post;

/// Problems listed per kind before the rest are only counted.
const SHOWN_PER_KIND: usize = 20;

#[derive(Debug, Deserialize)]
pub struct TestForm {
    csrf: Option<String>,
}

#[derive(Serialize)]
struct ProblemKind {
    kind: &'static str,
    shown: Vec<(String, String)>,
    more: usize,
}

pub async fn test_source(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    form: web::Form<TestForm>,
) -> HttpResponse {
    let session = match staff_post(&state, &request, &[Role::Admin], form.csrf.as_deref()).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let name = path.into_inner();
    let Some(source) = state.config.sources.get(&name).cloned() else {
        return failure(&state, &Error::NotFound(name));
    };
    let for_preview = name.clone();
    let previewed = web::block(move || preview_source(&for_preview, &source, &Quiet)).await;
    let (status, preview, error) = match previewed {
        Ok(Ok(preview)) => (StatusCode::OK, Some(preview), None),
        Ok(Err(e)) => {
            tracing::warn!(source = %name, code = e.code(), "source test failed");
            (StatusCode::BAD_GATEWAY, None, Some(e.to_string()))
        }
        Err(e) => return failure(&state, &Error::Internal(e.to_string())),
    };
    let problems: Vec<ProblemKind> = preview.as_ref().map_or_else(Vec::new, |p| {
        let mut kinds: Vec<&'static str> = p.problems.iter().map(|x| x.kind).collect();
        kinds.dedup();
        kinds
            .into_iter()
            .map(|kind| {
                let of_kind: Vec<_> = p.problems.iter().filter(|x| x.kind == kind).collect();
                ProblemKind {
                    kind,
                    shown: of_kind
                        .iter()
                        .take(SHOWN_PER_KIND)
                        .map(|x| (x.subject.clone(), x.detail.clone()))
                        .collect(),
                    more: of_kind.len().saturating_sub(SHOWN_PER_KIND),
                }
            })
            .collect()
    });
    state.pages.render(
        status,
        "console_source_test.html",
        minijinja::context! {
            staff => staff_view(&state, &session),
            name => name,
            error => error,
            seconds => preview.as_ref().map(|p| format!("{:.1}", p.elapsed.as_secs_f64())),
            report => preview.as_ref().map(|p| &p.report),
            counts => preview.as_ref().map(|p| minijinja::context! {
                people => p.people, service_accounts => p.service_accounts,
                disabled => p.disabled, groups => p.groups,
                memberships => p.memberships, accesses => p.accesses,
            }),
            problems => problems,
            problem_total => preview.as_ref().map_or(0, |p| p.problems.len()),
        },
    )
}
