//! A synthetic directory for the benchmarks: a CSV source with one row per access, each person
//! holding `ACCESSES_PER_PERSON` of them and reporting to a manager ten levels up a tree (so
//! about a tenth of the people review), and the configuration that reads it with a `large`
//! campaign over every group and a `small` one over one group; and the item-count arguments
//! the benchmarks share.

use std::io::Write as _;
use std::path::Path;

use attest::config::{CampaignDefinition, Config, CsvSourceConfig, SourceConfig};

pub const ACCESSES_PER_PERSON: usize = 5;
pub const SOURCE: &str = "bench";

/// person_id,login,email,manager,entitlement: person i reports to person i/10.
pub fn write_access_list(path: &Path, people: usize) {
    let groups = (people / 20).max(10);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(out, "person_id,login,email,manager,entitlement,privileged").unwrap();
    for i in 0..people {
        let manager = if i == 0 {
            String::new()
        } else {
            format!("p{}", i / 10)
        };
        for k in 0..ACCESSES_PER_PERSON {
            let group = (i * 7 + k * 131) % groups;
            writeln!(
                out,
                "p{i},user{i},user{i}@example.com,{manager},g{group}-{k},{}",
                group == 0
            )
            .unwrap();
        }
    }
    out.flush().unwrap();
}

/// The database at `url`, the CSV source at `csv`, and the two campaign definitions.
pub fn config(url: &str, csv: &Path) -> Config {
    let mut config = Config::default();
    config.database.url = url.to_string();
    config.sources.insert(
        SOURCE.to_string(),
        SourceConfig::Csv(CsvSourceConfig {
            path: csv.to_path_buf(),
            privileged_groups: Vec::new(),
            remediation: None,
        }),
    );
    for (name, groups) in [("large", vec![]), ("small", vec!["g0-0".to_string()])] {
        let mut definition =
            CampaignDefinition::for_source(SOURCE, vec!["security@example.com".into()]);
        definition.schedule = "manual".into();
        definition.groups = groups;
        config.campaigns.insert(name.to_string(), definition);
    }
    config
}

/// The benchmark's size from its arguments: `--smoke` (5,000 items, what CI runs), `--items N`,
/// or 1,000,000. Returns (smoke, items).
pub fn items_from_args() -> (bool, usize) {
    let args: Vec<String> = std::env::args().collect();
    let smoke = args.iter().any(|a| a == "--smoke");
    let items = args
        .windows(2)
        .find(|w| w[0] == "--items")
        .map(|w| w[1].parse().expect("--items N"))
        .unwrap_or(if smoke { 5_000 } else { 1_000_000 });
    (smoke, items)
}
