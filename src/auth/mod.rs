//! Who staff are and what they may do: roles, and API tokens (hashed at rest, scoped to a
//! role, expiring, revocable) that admins issue from the command line, and sign-in at the
//! organisation's OpenID Connect provider with browser sessions, on the same staff records;
//! and reviewers' sign-in at that provider when `review.require_sso` asks for it
//! (`reviewer_sso`). The web layer asks this module who a request's bearer is; the spine
//! never imports it.

pub mod api_tokens;
pub mod provider_cache;
pub mod reviewer_sso;
pub mod role;
pub mod sessions;
pub mod sign_in_links;
pub mod staff_sign_in;
mod staff_users;

pub use api_tokens::{ApiToken, IssuedToken, NewToken, authenticate, issue, list_tokens, revoke};
pub use role::Role;
pub use staff_users::{StaffListing, list_staff};
