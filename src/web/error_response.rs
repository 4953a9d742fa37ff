//! The one mapping from [`Error`] to HTTP for JSON endpoints: a stable code and a message that
//! never carries internals (database and internal errors are summarised).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::error::Error;

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        match self {
            Error::Config(_) | Error::BadRequest(_) | Error::ReasonRequired(_) => {
                StatusCode::BAD_REQUEST
            }
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) | Error::Csrf => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) | Error::Stale(_) => StatusCode::CONFLICT,
            Error::Source { .. } | Error::Mail(_) => StatusCode::BAD_GATEWAY,
            Error::DatabaseUrl(_)
            | Error::Database(_)
            | Error::Template(_)
            | Error::Io(_)
            | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, code = self.code(), "request failed");
            "internal error".to_string()
        } else {
            self.to_string()
        };
        HttpResponse::build(status).json(json!({ "code": self.code(), "message": message }))
    }
}
