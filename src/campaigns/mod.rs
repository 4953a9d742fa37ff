//! Campaigns: a definition from config turned into a frozen set of review items, one per
//! (person, group) of the source's current snapshot, each routed to a reviewer. Generation
//! works in short transactions and opens the campaign in a last one: until then nobody
//! sees it, so a campaign is seen whole or not at all. This module decides what is
//! reviewed and by whom; sending mail and recording decisions belong to `notify/` and
//! `decisions/`.

pub mod closing;
pub mod delegation;
mod freeze;
pub mod generate;
mod generation_guard;
pub mod item_context;
pub mod lifecycle;
pub mod model;
mod population;
pub mod reassign;
pub mod reviewers;
pub mod routing;
pub mod schedule;
pub mod stage_moves;
pub mod stages;
mod staging;

pub use closing::{ClosePreview, CloseRules, close_campaign, preview_close};
pub use generate::{Opening, StartedCampaign, open_campaign, start_campaign};
pub use lifecycle::{CampaignSummary, list_campaigns};
pub use model::{Campaign, ReviewItem, Reviewer};
