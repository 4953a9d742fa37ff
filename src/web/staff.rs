//! Who is calling the API: the bearer of an API token (`Authorization: Bearer ...`), checked
//! against the roles a route allows. Every refusal is the same 401 for a missing, unknown,
//! expired or revoked token (and for a review link's token presented here), logged without
//! the token; a valid token of a role the route does not allow gets 403.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

use crate::auth::{ApiToken, Role, authenticate};
use crate::error::Error;
use crate::web::AppState;
use crate::web::access_log::loggable_path;

/// Why an API request is refused, as its response.
#[derive(Debug)]
pub enum Refused {
    Unauthenticated,
    NotAllowed,
    Failed(Error),
}

impl Refused {
    pub fn response(&self) -> HttpResponse {
        match self {
            Refused::Unauthenticated => HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"attest\""))
                .json(json!({
                    "code": "unauthorized",
                    "message": "a valid API token is required (Authorization: Bearer ...)",
                })),
            Refused::NotAllowed => HttpResponse::Forbidden().json(json!({
                "code": "forbidden",
                "message": "this token's role may not use this route",
            })),
            Refused::Failed(e) => actix_web::ResponseError::error_response(e),
        }
    }
}

/// The caller's token, if it is valid now and its role is one of `allowed`.
pub async fn bearer(
    state: &AppState,
    request: &HttpRequest,
    allowed: &[Role],
) -> Result<ApiToken, Refused> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_string())
        });
    let Some(presented) = presented else {
        tracing::warn!(path = %loggable_path(request.path()), "API request without a bearer token");
        return Err(Refused::Unauthenticated);
    };
    let now = state.clock.now();
    let found = state
        .db
        .run(move |conn| authenticate(conn, now, &presented))
        .await;
    let token = match found {
        Ok(token) => token,
        Err(Error::Unauthorized) => {
            tracing::warn!(path = %loggable_path(request.path()), "API request with an invalid token");
            return Err(Refused::Unauthenticated);
        }
        Err(e) => return Err(Refused::Failed(e)),
    };
    if !allowed.contains(&token.role) {
        tracing::warn!(
            path = %loggable_path(request.path()),
            token = %token.id,
            role = %token.role,
            "API request refused for its role"
        );
        return Err(Refused::NotAllowed);
    }
    Ok(token)
}
