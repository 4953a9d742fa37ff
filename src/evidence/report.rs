//! `report.html`: the pack read by a person. One self-contained page (no external assets,
//! prints cleanly) with the campaign's result, timeliness, the two charts, exceptions, the
//! reviewers, the SOC 2 mapping and how to verify the pack offline. The template escapes
//! every value that comes from the directory or a reviewer.

use std::collections::BTreeMap;

use minijinja::{AutoEscape, Environment, context};
use serde::Serialize;

use crate::campaigns::model::Campaign;
use crate::error::{Error, Result};
use crate::evidence::charts::{LargestGroups, progress_chart};
use crate::evidence::reviewer_figures::ReviewerFigures;
use crate::evidence::soc2::Soc2Mapping;
use crate::evidence::summary::{DayProgress, Outcomes, Summary, Timeliness};

const TEMPLATE: &str = include_str!("templates/report.html");
/// Reviewers listed in the report; all of them are in `summary.json`.
const REVIEWER_ROWS: usize = 50;

/// What the report shows besides the figures.
#[derive(Debug, Clone, Serialize)]
pub struct ReportContext<'a> {
    pub generated_at: String,
    pub verifier_key: &'a str,
    pub checkpoint_size: i64,
    /// The signed checkpoint's text (origin, size, root hash and signature).
    pub checkpoint_note: &'a str,
    /// The pack's other files, as the manifest lists them.
    pub files: Vec<String>,
}

/// The parts of the summary the report shows in full.
#[derive(Serialize)]
struct ReportFigures<'a> {
    totals: &'a Outcomes,
    privileged: &'a Outcomes,
    timeliness: &'a Timeliness,
    progress: &'a [DayProgress],
    no_response_policy: &'a BTreeMap<String, u64>,
    exceptions: &'a BTreeMap<String, u64>,
}

/// Renders the report of `campaign`, whose largest groups are `groups`.
pub fn render_report(
    campaign: &Campaign,
    summary: &Summary,
    reviewers: &ReviewerFigures,
    groups: &LargestGroups,
    soc2: &Soc2Mapping,
    pack: &ReportContext,
) -> Result<String> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    env.add_template("report.html", TEMPLATE)
        .map_err(|e| Error::Internal(format!("report template: {e}")))?;
    let (busiest, reviewers_left_out) = reviewers.busiest(REVIEWER_ROWS);
    let percent = |part: u64| {
        if summary.totals.items == 0 {
            "0".to_string()
        } else {
            format!("{:.1}", part as f64 * 100.0 / summary.totals.items as f64)
        }
    };
    env.get_template("report.html")
        .and_then(|t| {
            t.render(context! {
                campaign,
                // What the page shows of the summary: not its per-group and per-reviewer
                // lists, which can be long (the top of each is passed on its own).
                summary => ReportFigures {
                    totals: &summary.totals,
                    privileged: &summary.privileged,
                    timeliness: &summary.timeliness,
                    progress: &summary.progress,
                    no_response_policy: &summary.no_response_policy,
                    exceptions: &summary.exceptions,
                },
                groups_total => groups.total(),
                soc2,
                pack,
                decided_percent => percent(summary.totals.decided()),
                reviewers => busiest,
                reviewers_left_out,
                progress => progress_chart(summary),
                groups => groups.chart(),
            })
        })
        .map_err(|e| Error::Internal(format!("cannot render report.html: {e}")))
}
