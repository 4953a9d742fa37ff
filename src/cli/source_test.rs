//! Printing `attest source test`: where the source was read from, what it holds, and every
//! problem a sync would record, grouped by kind.

use attest::directory::preview::SourcePreview;

/// Problems listed in full per kind before the rest are only counted.
const SHOWN_PER_KIND: usize = 20;

pub fn print(name: &str, preview: &SourcePreview) {
    let report = &preview.report;
    println!(
        "{name}: read {} in {:.1} s",
        report.server,
        preview.elapsed.as_secs_f64()
    );
    if let Some(who) = &report.bind_identity {
        println!("  bound as {who}");
    }
    for search in &report.searches {
        println!(
            "  {} entries under {} with {} ({} page(s))",
            search.entries, search.base, search.filter, search.pages
        );
    }
    println!(
        "  {} people ({} service accounts, {} disabled), {} groups",
        preview.people, preview.service_accounts, preview.disabled, preview.groups
    );
    println!(
        "  {} direct memberships give {} accesses (nested groups expanded)",
        preview.memberships, preview.accesses
    );
    if preview.problems.is_empty() {
        println!("  no problems found");
        return;
    }
    println!(
        "  {} problem(s) a sync would record:",
        preview.problems.len()
    );
    let mut kinds: Vec<&str> = preview.problems.iter().map(|p| p.kind).collect();
    kinds.dedup();
    for kind in kinds {
        let of_kind: Vec<_> = preview.problems.iter().filter(|p| p.kind == kind).collect();
        for problem in of_kind.iter().take(SHOWN_PER_KIND) {
            println!("    {kind}  {}: {}", problem.subject, problem.detail);
        }
        if of_kind.len() > SHOWN_PER_KIND {
            println!("    ... and {} more {kind}", of_kind.len() - SHOWN_PER_KIND);
        }
    }
}
