//! `/api/v1/campaigns/{id}/items` and `/decisions`: a campaign's review items (each access
//! under review, decided or not) and every decision (changes of mind included), page by
//! page for an API token. Pages follow the ids (keyset paging: a page never shifts when
//! decisions arrive meanwhile); `next` is the next page's address, absent on the last.

use actix_web::{HttpRequest, HttpResponse, web};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Role;
use crate::campaigns::model::campaign;
use crate::db::schema::{decisions, review_items, reviewers};
use crate::db::time::from_db;
use crate::web::AppState;
use crate::web::staff::{Refused, bearer};

const READERS: [Role; 2] = [Role::Auditor, Role::Admin];
const DEFAULT_PAGE: i64 = 500;
const MAX_PAGE: i64 = 5_000;

/// Which page: the entries after `after` (an id from the previous page), `limit` of them.
#[derive(Debug, Deserialize, IntoParams)]
pub struct Page {
    /// The last id of the previous page.
    after: Option<String>,
    /// Entries per page (default 500, at most 5,000).
    limit: Option<i64>,
}

impl Page {
    fn size(&self) -> i64 {
        self.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE)
    }

    fn after(&self) -> String {
        self.after.clone().unwrap_or_default()
    }
}

/// One access under review.
#[derive(Serialize, ToSchema, Queryable)]
pub struct ItemEntry {
    id: String,
    person_login: String,
    person_name: String,
    group: String,
    privileged: bool,
    /// The nested groups the access comes through (`eng <- sre`), if not direct.
    via: Option<String>,
    reviewer_email: String,
    /// Why the reviewer reviews it (`manager`, `owner`, `fallback`, a reroute...).
    routing: String,
    /// `pending`, `approved`, `revoked` or `no_response`.
    state: String,
    /// What the no-response policy did, once closed undecided.
    no_response_outcome: Option<String>,
    #[schema(value_type = Option<String>)]
    #[serde(serialize_with = "rfc3339")]
    decided_at: Option<chrono::NaiveDateTime>,
}

#[derive(Serialize, ToSchema)]
pub struct ItemPage {
    items: Vec<ItemEntry>,
    next: Option<String>,
}

/// One decision as made.
#[derive(Serialize, ToSchema, Queryable)]
pub struct DecisionEntry {
    id: String,
    item: String,
    reviewer_email: String,
    /// `approve`, `revoke` or `dont_know`.
    outcome: String,
    comment: Option<String>,
    #[schema(value_type = String)]
    #[serde(serialize_with = "rfc3339_always")]
    decided_at: chrono::NaiveDateTime,
    /// How the reviewer proved who they are (`email_link`, `email_link+sso`, ...).
    auth_method: String,
    #[schema(value_type = Option<String>)]
    #[serde(serialize_with = "rfc3339")]
    approved_until: Option<chrono::NaiveDateTime>,
}

#[derive(Serialize, ToSchema)]
pub struct DecisionPage {
    decisions: Vec<DecisionEntry>,
    next: Option<String>,
}

fn rfc3339<S: serde::Serializer>(
    t: &Option<chrono::NaiveDateTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339_always(t, s),
        None => s.serialize_none(),
    }
}

fn rfc3339_always<S: serde::Serializer>(
    t: &chrono::NaiveDateTime,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&from_db(*t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// The next page's address when this one was full.
fn next_page(base: &str, last: Option<&str>, shown: usize, size: i64) -> Option<String> {
    (shown as i64 == size)
        .then_some(last)
        .flatten()
        .map(|id| format!("{base}?after={id}&limit={size}"))
}

/// A campaign's review items, in id order, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/campaigns/{id}/items",
    tag = "campaigns",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The campaign's id"), Page),
    responses(
        (status = 200, body = ItemPage),
        (status = 401, description = "No valid API token", body = crate::web::api::ApiError),
        (status = 404, description = "No such campaign", body = crate::web::api::ApiError),
    )
)]
pub async fn items(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    page: web::Query<Page>,
) -> HttpResponse {
    if let Err(refused) = bearer(&state, &request, &READERS).await {
        return refused.response();
    }
    let (id, size, after) = (path.into_inner(), page.size(), page.after());
    let campaign_id = id.clone();
    let loaded = state
        .db
        .run(move |conn| {
            campaign(conn, &campaign_id)?;
            Ok(review_items::table
                .inner_join(reviewers::table)
                .filter(review_items::campaign_id.eq(&campaign_id))
                .filter(review_items::id.gt(&after))
                .order(review_items::id.asc())
                .limit(size)
                .select((
                    review_items::id,
                    review_items::identity_login,
                    review_items::identity_name,
                    review_items::entitlement_name,
                    review_items::privileged,
                    review_items::via,
                    reviewers::email,
                    review_items::routing,
                    review_items::state,
                    review_items::no_response_outcome,
                    review_items::decided_at,
                ))
                .load::<ItemEntry>(conn)?)
        })
        .await;
    match loaded {
        Ok(items) => {
            let base = format!("/api/v1/campaigns/{id}/items");
            let next = next_page(
                &base,
                items.last().map(|i| i.id.as_str()),
                items.len(),
                size,
            );
            HttpResponse::Ok().json(ItemPage { items, next })
        }
        Err(e) => Refused::Failed(e).response(),
    }
}

/// A campaign's decisions, changes of mind included, in the order they were made.
#[utoipa::path(
    get,
    path = "/api/v1/campaigns/{id}/decisions",
    tag = "campaigns",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The campaign's id"), Page),
    responses(
        (status = 200, body = DecisionPage),
        (status = 401, description = "No valid API token", body = crate::web::api::ApiError),
        (status = 404, description = "No such campaign", body = crate::web::api::ApiError),
    )
)]
pub async fn decisions(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    page: web::Query<Page>,
) -> HttpResponse {
    if let Err(refused) = bearer(&state, &request, &READERS).await {
        return refused.response();
    }
    let (id, size, after) = (path.into_inner(), page.size(), page.after());
    let campaign_id = id.clone();
    let loaded = state
        .db
        .run(move |conn| {
            campaign(conn, &campaign_id)?;
            // Decision ids start with their time (UUID v7): id order is the order made.
            Ok(decisions::table
                .inner_join(reviewers::table.on(reviewers::id.eq(decisions::reviewer_id)))
                .filter(decisions::campaign_id.eq(&campaign_id))
                .filter(decisions::id.gt(&after))
                .order(decisions::id.asc())
                .limit(size)
                .select((
                    decisions::id,
                    decisions::item_id,
                    reviewers::email,
                    decisions::outcome,
                    decisions::comment,
                    decisions::decided_at,
                    decisions::auth_method,
                    decisions::approved_until,
                ))
                .load::<DecisionEntry>(conn)?)
        })
        .await;
    match loaded {
        Ok(decisions) => {
            let base = format!("/api/v1/campaigns/{id}/decisions");
            let last = decisions.last().map(|d| d.id.as_str());
            let next = next_page(&base, last, decisions.len(), size);
            HttpResponse::Ok().json(DecisionPage { decisions, next })
        }
        Err(e) => Refused::Failed(e).response(),
    }
}
