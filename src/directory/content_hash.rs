//! What makes a new version of a person or group: a SHA-256 over a length-prefixed encoding
//! of its content fields, so that an unchanged entry is recognised without comparing field by
//! field. Fields added later enter a person's hash only when present, so that upgrading does
//! not turn every person into a new version.

use sha2::{Digest, Sha256};

use crate::sources::PersonRecord;

/// A person's content that the import derives from the record before hashing.
pub(crate) struct PersonFacts<'a> {
    pub manager_dn_norm: Option<&'a str>,
    /// `active` or `disabled`.
    pub status: &'a str,
    /// `person` or `service`.
    pub account_kind: &'a str,
    /// The groups the entry names itself, normalised, as JSON.
    pub member_of: &'a str,
}

/// The content hash of a person.
pub(crate) fn person_content_sha256(person: &PersonRecord, facts: &PersonFacts<'_>) -> String {
    let mut hasher = content_hasher(&[
        Some(person.dn.as_str()),
        Some(&person.login),
        Some(&person.display_name),
        person.email.as_deref(),
        facts.manager_dn_norm,
        Some(facts.status),
        Some(facts.account_kind),
        Some(facts.member_of),
        person.gid_number.as_deref(),
    ]);
    // Added later (title, department): hashed only when present, so that people without
    // them keep the content hash (and version) they had before.
    if person.title.is_some() || person.department.is_some() {
        add_fields(
            &mut hasher,
            &[person.title.as_deref(), person.department.as_deref()],
        );
    }
    hex::encode(hasher.finalize())
}

/// SHA-256 over a length-prefixed encoding of the fields (absent and empty differ), hex.
#[cfg(test)]
fn content_sha256(fields: &[Option<&str>]) -> String {
    hex::encode(content_hasher(fields).finalize())
}

/// The hasher after `fields`, for callers that add more fields.
pub(crate) fn content_hasher(fields: &[Option<&str>]) -> Sha256 {
    let mut hasher = Sha256::new();
    add_fields(&mut hasher, fields);
    hasher
}

fn add_fields(hasher: &mut Sha256, fields: &[Option<&str>]) {
    for field in fields {
        match field {
            Some(text) => {
                hasher.update([1u8]);
                hasher.update((text.len() as u64).to_be_bytes());
                hasher.update(text.as_bytes());
            }
            None => hasher.update([0u8]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hash_tells_absent_from_empty_and_field_boundaries() {
        assert_ne!(content_sha256(&[None]), content_sha256(&[Some("")]));
        assert_ne!(
            content_sha256(&[Some("ab"), Some("c")]),
            content_sha256(&[Some("a"), Some("bc")])
        );
    }

    fn person(title: Option<&str>) -> PersonRecord {
        PersonRecord {
            external_id: "p1".into(),
            dn: "uid=ann,dc=x".into(),
            login: "ann".into(),
            display_name: "Ann".into(),
            email: Some("ann@x".into()),
            title: title.map(str::to_string),
            department: None,
            manager_dn: None,
            disabled: false,
            service_account: false,
            member_of: Vec::new(),
            gid_number: None,
            last_logon: None,
        }
    }

    #[test]
    fn people_without_title_or_department_keep_the_hash_they_had_before() {
        let facts = PersonFacts {
            manager_dn_norm: None,
            status: "active",
            account_kind: "person",
            member_of: "[]",
        };
        // The nine fields hashed before title and department existed.
        let before = content_sha256(&[
            Some("uid=ann,dc=x"),
            Some("ann"),
            Some("Ann"),
            Some("ann@x"),
            None,
            Some("active"),
            Some("person"),
            Some("[]"),
            None,
        ]);
        assert_eq!(person_content_sha256(&person(None), &facts), before);
        let titled = person_content_sha256(&person(Some("SRE")), &facts);
        assert_ne!(titled, before, "a title is content");
        assert_ne!(titled, person_content_sha256(&person(Some("CTO")), &facts));
    }
}
