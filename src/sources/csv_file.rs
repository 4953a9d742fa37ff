//! CSV source, for applications without a connector: one row per (person, entitlement), with
//! a header row naming the columns.
//!
//! | column        | required | meaning                                                        |
//! |---------------|----------|----------------------------------------------------------------|
//! | `person_id`   | yes      | the person's stable id in the application                      |
//! | `login`       | yes      | the person's login                                             |
//! | `name`        | no       | display name (defaults to the login)                           |
//! | `email`       | no       | where the person gets mail                                     |
//! | `title`       | no       | the person's job title (shown to reviewers)                    |
//! | `department`  | no       | the person's department (shown to reviewers)                   |
//! | `manager`     | no       | the `person_id` of the person's manager                        |
//! | `disabled`    | no       | true/false: the account is disabled                            |
//! | `entitlement` | no       | what the person has (empty for a person with nothing)          |
//! | `privileged`  | no       | true/false: that entitlement is privileged                     |
//! | `description` | no       | what the entitlement is for                                    |
//!
//! A person's columns must agree on every row that names them, as must an entitlement's.
//! The whole file is checked before anything is handed on: every problem is reported with its
//! line number (up to a limit), and a file with any problem imports nothing.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};

use sha2::{Digest, Sha256};

use crate::config::CsvSourceConfig;
use crate::error::Error;
use crate::sources::{
    FetchReport, GroupRecord, PersonRecord, RecordSink, SearchRecord, SourceRecord, synthetic_dn,
};

const SOURCE: &str = "csv";
const REQUIRED: [&str; 2] = ["person_id", "login"];
const OPTIONAL: [&str; 9] = [
    "name",
    "email",
    "title",
    "department",
    "manager",
    "disabled",
    "entitlement",
    "privileged",
    "description",
];
/// Problems listed before the rest are only counted.
const MAX_LISTED_PROBLEMS: usize = 25;

/// Feeds the file's bytes to the population hash as they are read.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// One person as the rows state them, with the line that first did.
struct Person {
    line: u64,
    record: PersonRecord,
    manager_id: Option<String>,
}

struct Entitlement {
    line: u64,
    privileged: Option<bool>,
    description: Option<String>,
    members: Vec<String>,
}

/// Reads the CSV file into `sink`: every person, then every entitlement. Blocking.
pub fn fetch(config: &CsvSourceConfig, sink: &mut dyn RecordSink) -> Result<FetchReport, Error> {
    let path = config.path.display().to_string();
    let file = File::open(&config.path)
        .map_err(|e| Error::source(SOURCE, format!("cannot open {path}: {e}")))?;
    let mut hashing = HashingReader {
        inner: BufReader::new(file),
        hasher: Sha256::new(),
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(&mut hashing);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| Error::source(SOURCE, format!("{path}: cannot read the header row: {e}")))?
        .iter()
        .map(|h| h.to_lowercase())
        .collect();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let mut problems = Vec::new();
    for name in REQUIRED {
        if column(name).is_none() {
            problems.push(format!("line 1: the header has no `{name}` column"));
        }
    }
    for header in &headers {
        if !REQUIRED.contains(&header.as_str()) && !OPTIONAL.contains(&header.as_str()) {
            problems.push(format!(
                "line 1: unknown column `{header}` (columns: {}, {})",
                REQUIRED.join(", "),
                OPTIONAL.join(", ")
            ));
        }
    }
    if !problems.is_empty() {
        return Err(file_problems(&path, &problems));
    }

    let mut people: Vec<Person> = Vec::new();
    let mut person_index: HashMap<String, usize> = HashMap::new();
    let mut entitlements: Vec<(String, Entitlement)> = Vec::new();
    let mut entitlement_index: HashMap<String, usize> = HashMap::new();
    let mut rows = 0u64;
    for row in reader.records() {
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                problems.push(format!("line {line}: {e}"));
                continue;
            }
        };
        rows += 1;
        let line = row.position().map_or(0, |p| p.line());
        let get = |name: &str| {
            column(name)
                .and_then(|i| row.get(i))
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let (Some(person_id), Some(login)) = (get("person_id"), get("login")) else {
            problems.push(format!(
                "line {line}: person_id and login must not be empty"
            ));
            continue;
        };
        let disabled = match parse_flag(get("disabled").as_deref()) {
            Ok(flag) => flag.unwrap_or(false),
            Err(value) => {
                problems.push(format!(
                    "line {line}: disabled is `{value}`; use true or false"
                ));
                continue;
            }
        };
        let manager_id = get("manager");
        let record = PersonRecord {
            external_id: person_id.clone(),
            dn: synthetic_dn("person", &person_id),
            display_name: get("name").unwrap_or_else(|| login.clone()),
            login,
            email: get("email"),
            title: get("title"),
            department: get("department"),
            manager_dn: manager_id.as_deref().map(|m| synthetic_dn("person", m)),
            disabled,
            service_account: false,
            member_of: Vec::new(),
            gid_number: None,
            last_logon: None,
        };
        match person_index.get(&person_id) {
            Some(&i) if people[i].record != record => problems.push(format!(
                "line {line}: person `{person_id}` is described differently on line {} \
                 (login, name, email, title, department, manager and disabled must agree on \
                 every row)",
                people[i].line
            )),
            Some(_) => {}
            None => {
                person_index.insert(person_id.clone(), people.len());
                people.push(Person {
                    line,
                    record,
                    manager_id,
                });
            }
        }
        let Some(entitlement) = get("entitlement") else {
            continue;
        };
        let privileged = match parse_flag(get("privileged").as_deref()) {
            Ok(flag) => flag,
            Err(value) => {
                problems.push(format!(
                    "line {line}: privileged is `{value}`; use true or false"
                ));
                continue;
            }
        };
        let description = get("description");
        let i = *entitlement_index
            .entry(entitlement.clone())
            .or_insert_with(|| {
                entitlements.push((
                    entitlement.clone(),
                    Entitlement {
                        line,
                        privileged,
                        description: description.clone(),
                        members: Vec::new(),
                    },
                ));
                entitlements.len() - 1
            });
        let known = &mut entitlements[i].1;
        if (privileged.is_some() && known.privileged.is_some() && privileged != known.privileged)
            || (description.is_some()
                && known.description.is_some()
                && description != known.description)
        {
            problems.push(format!(
                "line {line}: entitlement `{entitlement}` is described differently on line {} \
                 (privileged and description must agree)",
                known.line
            ));
        }
        known.privileged = known.privileged.or(privileged);
        known.description = known.description.take().or(description);
        known.members.push(synthetic_dn("person", &person_id));
    }
    for person in &people {
        if let Some(manager) = &person.manager_id
            && !person_index.contains_key(manager)
        {
            problems.push(format!(
                "line {}: manager `{manager}` of `{}` is no person_id in the file",
                person.line, person.record.external_id
            ));
        }
    }
    if !problems.is_empty() {
        return Err(file_problems(&path, &problems));
    }
    drop(reader);

    let person_count = people.len() as u64;
    for person in people {
        sink.accept(SourceRecord::Person(person.record))?;
    }
    let entitlement_count = entitlements.len() as u64;
    for (name, entitlement) in entitlements {
        sink.accept(SourceRecord::Group(GroupRecord {
            external_id: name.clone(),
            dn: synthetic_dn("entitlement", &name),
            name,
            description: entitlement.description,
            member_dns: entitlement.members,
            member_logins: Vec::new(),
            gid_number: None,
            owner_dn: None,
            privileged: entitlement.privileged.unwrap_or(false),
        }))?;
    }
    Ok(FetchReport {
        server: path,
        bind_identity: None,
        page_size: None,
        searches: vec![SearchRecord {
            base: "(whole file)".into(),
            scope: "file".into(),
            filter: format!("{rows} rows: {person_count} people, {entitlement_count} entitlements"),
            attributes: headers,
            entries: rows,
            pages: 1,
            referrals_skipped: Vec::new(),
        }],
        raw_sha256: hex::encode(hashing.hasher.finalize()),
        problems: Vec::new(),
    })
}

fn file_problems(path: &str, problems: &[String]) -> Error {
    let mut listed: Vec<&str> = problems
        .iter()
        .take(MAX_LISTED_PROBLEMS)
        .map(String::as_str)
        .collect();
    let more = problems.len().saturating_sub(MAX_LISTED_PROBLEMS);
    let tail = format!("and {more} more");
    if more > 0 {
        listed.push(&tail);
    }
    Error::source(
        SOURCE,
        format!(
            "{path} has {} problem(s), so nothing was imported: {}",
            problems.len(),
            listed.join("; ")
        ),
    )
}

/// `true`/`false` (also yes/no, 1/0), or the offending text.
fn parse_flag(value: Option<&str>) -> Result<Option<bool>, String> {
    match value.map(str::to_lowercase).as_deref() {
        None => Ok(None),
        Some("true" | "yes" | "1") => Ok(Some(true)),
        Some("false" | "no" | "0") => Ok(Some(false)),
        Some(other) => Err(other.to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect(Vec<SourceRecord>);

    impl RecordSink for Collect {
        fn accept(&mut self, record: SourceRecord) -> Result<(), Error> {
            self.0.push(record);
            Ok(())
        }
    }

    fn read(text: &str) -> Result<Vec<SourceRecord>, Error> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.csv");
        std::fs::write(&path, text).unwrap();
        let config = CsvSourceConfig {
            path,
            privileged_groups: vec![],
            remediation: None,
        };
        let mut sink = Collect::default();
        fetch(&config, &mut sink).map(|_| sink.0)
    }

    #[test]
    fn rows_become_people_and_entitlements() {
        let records = read(
            "person_id,login,name,email,manager,entitlement,privileged,description\n\
             1,ann,Ann,ann@x,,admin,true,Full control\n\
             2,bob,Bob,bob@x,1,admin,,\n\
             2,bob,Bob,bob@x,1,viewer,false,\n\
             3,\"lee, a\",Lee,,1,,,\n",
        )
        .unwrap();
        let people: Vec<_> = records
            .iter()
            .filter_map(|r| match r {
                SourceRecord::Person(p) => Some(p),
                SourceRecord::Group(_) => None,
            })
            .collect();
        let groups: Vec<_> = records
            .iter()
            .filter_map(|r| match r {
                SourceRecord::Group(g) => Some(g),
                SourceRecord::Person(_) => None,
            })
            .collect();
        assert_eq!(people.len(), 3);
        assert_eq!(people[1].manager_dn.as_deref(), Some("person=1"));
        assert_eq!(people[2].login, "lee, a");
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].name, "admin");
        assert!(groups[0].privileged);
        assert_eq!(groups[0].description.as_deref(), Some("Full control"));
        assert_eq!(groups[0].member_dns, vec!["person=1", "person=2"]);
        assert!(!groups[1].privileged);
    }

    #[test]
    fn every_problem_is_reported_with_its_line_and_nothing_is_imported() {
        let err = read(
            "person_id,login,entitlement,privileged,manager\n\
             1,ann,admin,true,\n\
             ,bob,admin,,\n\
             1,annie,viewer,,\n\
             2,cy,admin,maybe,\n\
             3,di,admin,false,9\n",
        )
        .unwrap_err()
        .to_string();
        for expected in [
            "5 problem(s), so nothing was imported",
            "line 3: person_id and login must not be empty",
            "line 4: person `1` is described differently on line 2",
            "line 5: privileged is `maybe`",
            "line 6: entitlement `admin` is described differently on line 2",
            "line 6: manager `9`",
        ] {
            assert!(err.contains(expected), "missing `{expected}` in {err}");
        }
        let err = read("id,login,role\n1,a,b\n").unwrap_err().to_string();
        assert!(err.contains("no `person_id` column"), "{err}");
        assert!(err.contains("unknown column `role`"), "{err}");
    }
}
