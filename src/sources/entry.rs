//! Entry-to-record mapping shared by the LDAP and LDIF sources: an
//! [`Entry`] with textual values, and the rules that turn it into a [`PersonRecord`] or a
//! [`GroupRecord`] (login required, name falls back to login, first value of multi-valued
//! attributes, every member value kept, binary values as `base64:<b64>`). It only maps: it
//! performs no I/O, decides nothing about scope or filters, and never drops an entry silently.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::config::{GroupQuery, PeopleQuery};
use crate::sources::account::AccountRules;
use crate::sources::{GroupRecord, PersonRecord};

/// The attributes asked for in people searches, each once, in configuration order.
pub(crate) fn people_attributes(q: &PeopleQuery, rules: &AccountRules) -> Vec<String> {
    let names = [
        &q.id_attribute,
        &q.login_attribute,
        &q.name_attribute,
        &q.email_attribute,
        &q.title_attribute,
        &q.manager_attribute,
        &q.member_of_attribute,
        &q.gid_number_attribute,
    ];
    let rule_attributes = rules.attributes();
    unique(
        names
            .into_iter()
            .chain(&q.department_attributes)
            .chain(rule_attributes.iter()),
    )
}

/// The attributes asked for in group searches, each once, in configuration order.
pub(crate) fn group_attributes(q: &GroupQuery) -> Vec<String> {
    let names = [
        &q.id_attribute,
        &q.name_attribute,
        &q.member_uid_attribute,
        &q.gid_number_attribute,
        &q.description_attribute,
    ];
    unique(
        names
            .into_iter()
            .chain(q.member_attributes.iter())
            .chain(q.owner_attributes.iter()),
    )
}

fn unique<'a>(names: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in names.filter(|n| !n.trim().is_empty()) {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(name)) {
            out.push(name.clone());
        }
    }
    out
}

/// A value as text: UTF-8 as it is, anything else as `base64:<standard base64>`.
pub(crate) fn value_text(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => format!("base64:{}", BASE64.encode(e.as_bytes())),
    }
}

/// A value as text: Active Directory's binary ids in their canonical forms, anything else as
/// [`value_text`] (UTF-8, or base64).
pub(crate) fn binary_text(attribute: &str, value: Vec<u8>) -> String {
    let base = attribute.split(';').next().unwrap_or(attribute);
    if base.eq_ignore_ascii_case("objectGUID") && value.len() == 16 {
        return guid_text(&value);
    }
    if base.eq_ignore_ascii_case("objectSid")
        && let Some(sid) = sid_text(&value)
    {
        return sid;
    }
    value_text(value)
}

/// A GUID as Active Directory shows it: the first three fields little-endian.
fn guid_text(b: &[u8]) -> String {
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    )
}

/// `S-1-5-21-...`: revision, 48-bit big-endian authority, then little-endian sub-authorities.
fn sid_text(b: &[u8]) -> Option<String> {
    let count = usize::from(*b.get(1)?);
    if b.len() != 8 + 4 * count || b[0] != 1 {
        return None;
    }
    let authority = b[2..8]
        .iter()
        .fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
    let mut text = format!("S-{}-{authority}", b[0]);
    for chunk in b[8..].chunks_exact(4) {
        let sub = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        text.push_str(&format!("-{sub}"));
    }
    Some(text)
}

/// An entry with textual values, as both the LDAP and the LDIF source see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Entry {
    pub dn: String,
    pub attrs: Vec<(String, Vec<String>)>,
}

impl Entry {
    /// Adds a value under `name`, joining an attribute already present (case-insensitively).
    pub fn push(&mut self, name: &str, value: String) {
        match self
            .attrs
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some((_, values)) => values.push(value),
            None => self.attrs.push((name.to_string(), vec![value])),
        }
    }

    /// Every value of `name`, including those under options (`member;range=0-1499`).
    pub fn values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> {
        self.attrs
            .iter()
            .filter(move |(n, _)| {
                n.split(';')
                    .next()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .flat_map(|(_, values)| values.iter().map(String::as_str))
            .filter(|v| !v.trim().is_empty())
    }

    /// The first non-blank value of `name`.
    pub fn first(&self, name: &str) -> Option<&str> {
        self.values(name).next()
    }
}

/// The external id from `attribute`, or a message naming the entry and the key to fix.
pub(crate) fn required_id(entry: &Entry, attribute: &str, key: &str) -> Result<String, String> {
    entry
        .first(attribute)
        .map(str::to_string)
        .ok_or_else(|| missing(entry, "id", attribute, key))
}

fn missing(entry: &Entry, what: &str, attribute: &str, key: &str) -> String {
    format!(
        "entry `{}` has no {what}: attribute `{attribute}` ({key}) is missing",
        entry.dn
    )
}

/// Maps a person: login required, name falls back to login, first value of each attribute.
pub(crate) fn map_person(
    entry: &Entry,
    q: &PeopleQuery,
    rules: &AccountRules,
    external_id: String,
) -> Result<PersonRecord, String> {
    let login = entry
        .first(&q.login_attribute)
        .ok_or_else(|| missing(entry, "login", &q.login_attribute, "people.login_attribute"))?;
    Ok(PersonRecord {
        external_id,
        dn: entry.dn.clone(),
        login: login.to_string(),
        display_name: entry.first(&q.name_attribute).unwrap_or(login).to_string(),
        email: entry.first(&q.email_attribute).map(str::to_string),
        title: optional_attribute(entry, &q.title_attribute),
        department: q
            .department_attributes
            .iter()
            .find_map(|attribute| entry.first(attribute))
            .map(str::to_string),
        manager_dn: entry.first(&q.manager_attribute).map(str::to_string),
        disabled: rules.is_disabled(entry),
        service_account: rules.is_service_account(entry),
        member_of: entry
            .values(&q.member_of_attribute)
            .map(str::to_string)
            .collect(),
        gid_number: entry.first(&q.gid_number_attribute).map(str::to_string),
        last_logon: rules.last_logon(entry),
    })
}

/// The first value of an attribute the configuration may leave empty (not asked for).
fn optional_attribute(entry: &Entry, attribute: &str) -> Option<String> {
    (!attribute.is_empty())
        .then(|| entry.first(attribute))
        .flatten()
        .map(str::to_string)
}

/// Maps a group: every member value is kept; a missing name falls back to the RDN's value.
pub(crate) fn map_group(entry: &Entry, q: &GroupQuery, external_id: String) -> GroupRecord {
    GroupRecord {
        external_id,
        dn: entry.dn.clone(),
        name: entry
            .first(&q.name_attribute)
            .map_or_else(|| rdn_value(&entry.dn), str::to_string),
        description: entry.first(&q.description_attribute).map(str::to_string),
        member_dns: q
            .member_attributes
            .iter()
            .flat_map(|attribute| entry.values(attribute))
            .map(|value| without_unique_id(value).to_string())
            .collect(),
        member_logins: entry
            .values(&q.member_uid_attribute)
            .map(|v| v.trim().to_string())
            .collect(),
        gid_number: entry.first(&q.gid_number_attribute).map(str::to_string),
        privileged: false,
        owner_dn: q
            .owner_attributes
            .iter()
            .find_map(|attribute| entry.first(attribute))
            .map(str::to_string),
    }
}

/// A `uniqueMember` value without its optional unique-identifier suffix (`dn#'0101'B`).
fn without_unique_id(value: &str) -> &str {
    match value.rsplit_once("#'") {
        Some((dn, bits)) if bits.ends_with("'B") => dn,
        _ => value,
    }
}

/// The value of the first RDN (`cn=Admins,ou=x` → `Admins`), or the whole DN if unusual.
fn rdn_value(dn: &str) -> String {
    let mut escaped = false;
    let end = dn
        .char_indices()
        .find(|&(_, c)| {
            let hit = c == ',' && !escaped;
            escaped = c == '\\' && !escaped;
            hit
        })
        .map_or(dn.len(), |(i, _)| i);
    match dn[..end].split_once('=') {
        Some((_, value)) if !value.trim().is_empty() => value.trim().to_string(),
        _ => dn.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(dn: &str, attrs: &[(&str, &[&str])]) -> Entry {
        let mut e = Entry {
            dn: dn.into(),
            attrs: Vec::new(),
        };
        for (name, values) in attrs {
            for v in *values {
                e.push(name, v.to_string());
            }
        }
        e
    }

    fn person(e: &Entry, q: &PeopleQuery) -> Result<PersonRecord, String> {
        let rules = AccountRules::new(q).unwrap();
        map_person(e, q, &rules, "id-1".into())
    }

    #[test]
    fn person_maps_with_fallbacks_and_first_values() {
        let mut q = PeopleQuery {
            disabled_attribute: Some("employeeType".into()),
            ..Default::default()
        };
        let e = entry(
            "uid=ann,ou=people,dc=x",
            &[
                ("uid", &["ann", "ann2"]),
                ("mail", &["a@x", "b@x"]),
                ("employeetype", &["TRUE"]),
                ("memberOf", &["cn=a,dc=x", "cn=b,dc=x"]),
                ("gidNumber", &["500"]),
                ("authTimestamp", &["20261120081500Z"]),
                ("title", &["SRE"]),
                ("departmentNumber", &["eng"]),
            ],
        );
        let p = person(&e, &q).unwrap();
        assert_eq!(p.title.as_deref(), Some("SRE"));
        assert_eq!(
            p.department.as_deref(),
            Some("eng"),
            "departmentNumber when no department"
        );
        assert_eq!((p.login.as_str(), p.display_name.as_str()), ("ann", "ann"));
        assert_eq!(p.email.as_deref(), Some("a@x"));
        assert_eq!(p.manager_dn, None);
        assert!(p.disabled);
        assert_eq!(p.member_of, vec!["cn=a,dc=x", "cn=b,dc=x"]);
        assert_eq!(p.gid_number.as_deref(), Some("500"));
        assert_eq!(
            p.last_logon.unwrap().to_rfc3339(),
            "2026-11-20T08:15:00+00:00"
        );
        assert!(!p.service_account);
        q.disabled_attribute = None;
        assert!(!person(&e, &q).unwrap().disabled);
    }

    #[test]
    fn missing_login_or_id_names_the_dn() {
        let q = PeopleQuery::default();
        let e = entry("cn=Nobody,dc=x", &[("cn", &["Nobody"])]);
        let err = person(&e, &q).unwrap_err();
        assert!(
            err.contains("cn=Nobody,dc=x") && err.contains("`uid`"),
            "{err}"
        );
        let err = required_id(&e, "entryUUID", "people.id_attribute").unwrap_err();
        assert!(
            err.contains("cn=Nobody,dc=x") && err.contains("entryUUID"),
            "{err}"
        );
    }

    #[test]
    fn group_keeps_all_members_of_every_schema_including_ranged_values() {
        let q = GroupQuery::default();
        let e = entry(
            "cn=Admins\\, EU,ou=groups,dc=x",
            &[
                ("member", &["uid=a,dc=x"]),
                ("member;range=1-*", &["uid=b,dc=x"]),
                ("uniqueMember", &["uid=c,dc=x#'0101'B", "uid=d#x,dc=x"]),
                ("memberUid", &[" eve "]),
                ("gidNumber", &["5000"]),
            ],
        );
        let g = map_group(&e, &q, "g1".into());
        assert_eq!(
            g.member_dns,
            vec!["uid=a,dc=x", "uid=b,dc=x", "uid=c,dc=x", "uid=d#x,dc=x"]
        );
        assert_eq!(g.member_logins, vec!["eve"]);
        assert_eq!(g.gid_number.as_deref(), Some("5000"));
        assert_eq!(g.name, "Admins\\, EU");
        let empty = map_group(&entry("cn=E,dc=x", &[("cn", &["E"])]), &q, "g2".into());
        assert!(empty.member_dns.is_empty());
    }

    #[test]
    fn attributes_are_asked_once_each() {
        let q = PeopleQuery {
            name_attribute: "UID".into(),
            ..Default::default()
        };
        let rules = AccountRules::new(&q).unwrap();
        assert_eq!(
            people_attributes(&q, &rules),
            vec![
                "entryUUID",
                "uid",
                "mail",
                "title",
                "manager",
                "memberOf",
                "gidNumber",
                "department",
                "departmentNumber",
                "userAccountControl",
                "nsAccountLock",
                "pwdAccountLockedTime",
                "lastLogonTimestamp",
                "authTimestamp"
            ]
        );
        let g = group_attributes(&GroupQuery::default());
        assert_eq!(
            g,
            vec![
                "entryUUID",
                "cn",
                "memberUid",
                "gidNumber",
                "description",
                "member",
                "uniqueMember",
                "owner",
                "managedBy"
            ]
        );
    }

    #[test]
    fn values_are_text_or_base64() {
        assert_eq!(value_text(b"K\xc3\xb6ller".to_vec()), "Köller");
        assert_eq!(value_text(vec![0xff, 0x00]), "base64:/wA=");
        assert_eq!(rdn_value("weird"), "weird");
    }
}
