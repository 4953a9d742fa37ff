//! The geometry of the two charts of `report.html` (inline SVG, no external assets): the
//! campaign's progress over time (items decided so far, day by day, against the due date)
//! and outcomes by group (one bar per group, split by outcome). Only numbers are computed
//! here; the report's template draws them and escapes every label.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::evidence::summary::{DayProgress, GroupSummary, Outcomes, Summary};

/// Chart area in SVG units.
const PLOT_WIDTH: f64 = 600.0;
const PLOT_HEIGHT: f64 = 200.0;
/// Groups drawn one by one; the rest share one bar.
pub const GROUP_BARS: usize = 20;
const BAR_HEIGHT: f64 = 18.0;
const BAR_GAP: f64 = 6.0;
const BAR_WIDTH: f64 = 360.0;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProgressChart {
    pub width: f64,
    pub height: f64,
    /// `x,y x,y ...` of the line of items decided so far.
    pub points: String,
    /// Where the due date falls, when it is within the drawn days.
    pub due_x: Option<f64>,
    pub first_day: String,
    pub last_day: String,
    pub due_day: String,
    pub decided: u64,
    pub items: u64,
    /// The whole chart, as inline SVG.
    pub svg: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Segment {
    pub outcome: &'static str,
    pub x: f64,
    pub width: f64,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GroupBar {
    pub label: String,
    /// The label cut to fit beside the bar.
    pub short_label: String,
    pub privileged: bool,
    pub y: f64,
    pub items: u64,
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GroupChart {
    pub height: f64,
    pub bar_height: f64,
    pub bar_width: f64,
    pub bars: Vec<GroupBar>,
}

fn day_of(text: &str) -> Option<NaiveDate> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc).date_naive())
}

/// Items decided so far from the opening day to the close (or the last decision, or the due
/// date, whichever comes last).
pub fn progress_chart(summary: &Summary) -> ProgressChart {
    let t = &summary.timeliness;
    progress_chart_from(
        &t.opened_at,
        &t.due_at,
        t.closed_at.as_deref(),
        &summary.progress,
        summary.totals.items,
    )
}

/// The same from the campaign's dates (RFC 3339) and its progress day by day: for the
/// console, which has no pack's summary.
pub fn progress_chart_from(
    opened_at: &str,
    due_at: &str,
    closed_at: Option<&str>,
    days: &[DayProgress],
    items_total: u64,
) -> ProgressChart {
    let opened = day_of(opened_at).unwrap_or_default();
    let due = day_of(due_at).unwrap_or(opened);
    let mut last = closed_at.and_then(day_of).unwrap_or(due);
    let progress: Vec<(NaiveDate, u64)> = days
        .iter()
        .filter_map(|d| Some((d.day.parse::<NaiveDate>().ok()?, d.items_decided_so_far)))
        .collect();
    if let Some((day, _)) = progress.last() {
        last = last.max(*day);
    }
    let first = progress.first().map_or(opened, |(day, _)| opened.min(*day));
    let span = (last - first).num_days().max(1) as f64;
    let items = items_total.max(1) as f64;
    let x_of = |day: NaiveDate| ((day - first).num_days() as f64 / span * PLOT_WIDTH).round();
    let y_of = |decided: u64| (PLOT_HEIGHT - decided as f64 / items * PLOT_HEIGHT).round();
    // A step line: flat until a day's decisions, then up to the day's total.
    let mut points = vec![format!("0,{}", PLOT_HEIGHT)];
    let mut so_far = 0;
    for (day, decided) in &progress {
        points.push(format!("{},{}", x_of(*day), y_of(so_far)));
        points.push(format!("{},{}", x_of(*day), y_of(*decided)));
        so_far = *decided;
    }
    points.push(format!("{},{}", PLOT_WIDTH, y_of(so_far)));
    let mut chart = ProgressChart {
        width: PLOT_WIDTH,
        height: PLOT_HEIGHT,
        points: points.join(" "),
        due_x: (due >= first && due <= last).then(|| x_of(due)),
        first_day: first.to_string(),
        last_day: last.to_string(),
        due_day: due.to_string(),
        decided: so_far,
        items: items_total,
        svg: String::new(),
    };
    chart.svg = progress_svg(&chart);
    chart
}

/// The chart as inline SVG (no external assets): only numbers and dates go into it.
fn progress_svg(c: &ProgressChart) -> String {
    let (w, h) = (c.width, c.height);
    let due = match c.due_x {
        Some(x) => {
            let label = if x > 150.0 {
                format!(
                    r#"<text x="{}" y="14" text-anchor="end">due {}</text>"#,
                    x - 4.0,
                    c.due_day
                )
            } else {
                format!(r#"<text x="{}" y="14">due {}</text>"#, x + 4.0, c.due_day)
            };
            format!(
                r##"<line x1="{x}" y1="0" x2="{x}" y2="{h}" stroke="#b42318" stroke-dasharray="6 3"/>{label}"##
            )
        }
        None => String::new(),
    };
    format!(
        r##"<svg class="progress-chart" role="img" aria-labelledby="progress-title" viewBox="-50 -10 {vw} {vh}" width="100%">
<title id="progress-title">Accesses decided so far, {first} to {last}: {decided} of {items}</title>
<line x1="0" y1="{h}" x2="{w}" y2="{h}" stroke="#414b5a"/>
<line x1="0" y1="0" x2="0" y2="{h}" stroke="#414b5a"/>
<line x1="0" y1="0" x2="{w}" y2="0" stroke="#d0d5dd" stroke-dasharray="4 4"/>
<text x="-8" y="4" text-anchor="end">{items}</text>
<text x="-8" y="{h}" text-anchor="end">0</text>
{due}
<polyline points="{points}" fill="none" stroke="#1a7f37" stroke-width="2.5"/>
<text x="0" y="{below}">{first}</text>
<text x="{w}" y="{below}" text-anchor="end">{last}</text>
</svg>"##,
        vw = w + 70.0,
        vh = h + 45.0,
        below = h + 18.0,
        first = c.first_day,
        last = c.last_day,
        decided = c.decided,
        items = c.items,
        points = c.points,
    )
}

fn segments(outcomes: &Outcomes) -> Vec<Segment> {
    let total = outcomes.items.max(1) as f64;
    let mut x = 0.0;
    [
        ("approved", outcomes.approved),
        ("revoked", outcomes.revoked),
        ("no_response", outcomes.no_response),
        ("pending", outcomes.pending),
    ]
    .into_iter()
    .filter(|(_, count)| *count > 0)
    .map(|(outcome, count)| {
        let width = (count as f64 / total * BAR_WIDTH * 10.0).round() / 10.0;
        let segment = Segment {
            outcome,
            x,
            width,
            count,
        };
        x += width;
        segment
    })
    .collect()
}

fn shorten(label: &str) -> String {
    const MAX: usize = 30;
    if label.chars().count() <= MAX {
        label.to_string()
    } else {
        format!("{}…", label.chars().take(MAX - 1).collect::<String>())
    }
}

/// The groups the chart draws, kept while the groups go by one at a time (in group order,
/// as `summary.json` lists them): the `GROUP_BARS` largest, privileged first, and the sum of
/// the rest.
#[derive(Debug, Default)]
pub struct LargestGroups {
    /// Drawn so far, in the chart's order.
    drawn: Vec<GroupSummary>,
    rest: usize,
    rest_outcomes: Outcomes,
}

impl LargestGroups {
    /// How the chart orders groups: privileged first, then by size, then by name.
    fn order(a: &GroupSummary, b: &GroupSummary) -> std::cmp::Ordering {
        b.privileged
            .cmp(&a.privileged)
            .then(b.outcomes.items.cmp(&a.outcomes.items))
            .then(a.group_name.cmp(&b.group_name))
    }

    pub fn add(&mut self, group: &GroupSummary) {
        // After the equal ones: of two equal groups the one seen first is drawn first.
        let at = self
            .drawn
            .partition_point(|drawn| Self::order(drawn, group).is_le());
        if at >= GROUP_BARS {
            self.rest += 1;
            self.rest_outcomes.add_all(&group.outcomes);
            return;
        }
        self.drawn.insert(at, group.clone());
        if self.drawn.len() > GROUP_BARS
            && let Some(left_out) = self.drawn.pop()
        {
            self.rest += 1;
            self.rest_outcomes.add_all(&left_out.outcomes);
        }
    }

    /// How many groups went by.
    pub fn total(&self) -> usize {
        self.drawn.len() + self.rest
    }

    pub fn chart(&self) -> GroupChart {
        let mut bars: Vec<(String, bool, Outcomes)> = self
            .drawn
            .iter()
            .map(|g| (g.group_name.clone(), g.privileged, g.outcomes.clone()))
            .collect();
        if self.rest > 0 {
            bars.push((
                format!("{} other groups", self.rest),
                false,
                self.rest_outcomes.clone(),
            ));
        }
        let step = BAR_HEIGHT + BAR_GAP;
        GroupChart {
            height: (bars.len() as f64 * step).max(step),
            bar_height: BAR_HEIGHT,
            bar_width: BAR_WIDTH,
            bars: bars
                .into_iter()
                .enumerate()
                .map(|(i, (label, privileged, outcomes))| GroupBar {
                    short_label: shorten(&label),
                    label,
                    privileged,
                    y: i as f64 * step,
                    items: outcomes.items,
                    segments: segments(&outcomes),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, privileged: bool, approved: u64, revoked: u64) -> GroupSummary {
        let mut outcomes = Outcomes::default();
        outcomes.add("approved", approved);
        outcomes.add("revoked", revoked);
        GroupSummary {
            group_id: name.into(),
            group_name: name.into(),
            privileged,
            outcomes,
        }
    }

    #[test]
    fn bars_put_privileged_groups_first_and_share_the_rest() {
        let mut groups = vec![group("admins", true, 1, 1)];
        for i in 0..25 {
            groups.push(group(&format!("g{i:02}"), false, 10 + i, 0));
        }
        let mut largest = LargestGroups::default();
        for group in &groups {
            largest.add(group);
        }
        let chart = largest.chart();
        assert_eq!(largest.total(), 26);
        assert_eq!(chart.bars.len(), GROUP_BARS + 1);
        assert_eq!(chart.bars[0].label, "admins");
        assert_eq!(chart.bars[1].label, "g24");
        assert_eq!(chart.bars[GROUP_BARS].label, "6 other groups");
        // The rest's bar holds exactly the groups not drawn: g00..g05.
        assert_eq!(chart.bars[GROUP_BARS].items, (10..16).sum::<u64>());
        let halves = &chart.bars[0].segments;
        assert_eq!(halves.len(), 2);
        assert_eq!(halves[1].x, halves[0].width);
        assert_eq!(halves[0].width + halves[1].width, BAR_WIDTH);
    }

    #[test]
    fn the_groups_kept_are_the_first_of_the_whole_list_sorted() {
        // Sizes that repeat, so that ties (kept in group order) matter.
        let mut seed = 7u64;
        let mut groups: Vec<GroupSummary> = (0..300)
            .map(|i| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let size = (seed >> 33) % 6;
                let mut group = group(&format!("g{i:03}"), (seed >> 20).is_multiple_of(9), size, 0);
                group.group_name = format!("n{}", (seed >> 40) % 4);
                group
            })
            .collect();
        let mut largest = LargestGroups::default();
        for group in &groups {
            largest.add(group);
        }
        groups.sort_by(LargestGroups::order);
        let drawn: Vec<&str> = largest.drawn.iter().map(|g| g.group_id.as_str()).collect();
        let first: Vec<&str> = groups[..GROUP_BARS]
            .iter()
            .map(|g| g.group_id.as_str())
            .collect();
        assert_eq!(drawn, first);
        assert_eq!(largest.rest, 300 - GROUP_BARS);
        let rest_items: u64 = groups[GROUP_BARS..].iter().map(|g| g.outcomes.items).sum();
        assert_eq!(largest.rest_outcomes.items, rest_items);
    }
}
