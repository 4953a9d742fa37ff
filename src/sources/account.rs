//! Account state read off a person's entry, the same way for every directory: disabled
//! (Active Directory `userAccountControl` bit 2, 389-ds `nsAccountLock`, OpenLDAP ppolicy
//! `pwdAccountLockedTime`, or a configured attribute), the last logon (Active Directory FILETIME
//! numbers or LDAP generalized time), and whether the entry is a service account (under a
//! configured base or matching a configured filter). Pure functions of the entry.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};

use crate::config::PeopleQuery;
use crate::error::Error;
use crate::sources::entry::Entry;
use crate::sources::filter::Filter;
use crate::sources::{dn_under, normalize_dn};

/// Attributes that mark a disabled account in the directories attest knows.
pub(crate) const STATE_ATTRIBUTES: [&str; 3] = [
    "userAccountControl",
    "nsAccountLock",
    "pwdAccountLockedTime",
];

/// The `pwdAccountLockedTime` of an account locked until an administrator unlocks it.
const PERMANENTLY_LOCKED: &str = "000001010000Z";

/// `userAccountControl` flag ACCOUNTDISABLE.
const AD_ACCOUNT_DISABLED: u64 = 0x2;

/// Seconds between 1601-01-01 (FILETIME's epoch) and 1970-01-01.
const FILETIME_UNIX_OFFSET_SECONDS: i64 = 11_644_473_600;

/// The account rules of one people query, prepared once per sync.
pub(crate) struct AccountRules {
    disabled_attribute: Option<String>,
    last_logon_attributes: Vec<String>,
    service_bases: Vec<String>,
    service_filter: Option<Filter>,
}

impl AccountRules {
    pub fn new(q: &PeopleQuery) -> Result<AccountRules, Error> {
        let service_filter = q
            .service_account_filter
            .as_deref()
            .filter(|f| !f.trim().is_empty())
            .map(|f| Filter::parse_config("people.service_account_filter", f))
            .transpose()?;
        Ok(AccountRules {
            disabled_attribute: q.disabled_attribute.clone(),
            last_logon_attributes: q.last_logon_attributes.clone(),
            service_bases: q
                .service_account_bases
                .iter()
                .map(|b| normalize_dn(b))
                .collect(),
            service_filter,
        })
    }

    /// Attributes the rules read, for the search's attribute list.
    pub fn attributes(&self) -> Vec<String> {
        let mut names: Vec<String> = STATE_ATTRIBUTES.iter().map(|a| a.to_string()).collect();
        names.extend(self.disabled_attribute.iter().cloned());
        names.extend(self.last_logon_attributes.iter().cloned());
        if let Some(filter) = &self.service_filter {
            names.extend(filter.attributes());
        }
        names
    }

    pub fn is_disabled(&self, entry: &Entry) -> bool {
        let ad_disabled = entry
            .values("userAccountControl")
            .filter_map(|v| v.trim().parse::<u64>().ok())
            .any(|flags| flags & AD_ACCOUNT_DISABLED != 0);
        // ppolicy writes a lockout time for temporary lockouts too; only its permanent value
        // (set by an administrator) disables the account.
        let locked = entry.values("nsAccountLock").any(is_true)
            || entry
                .values("pwdAccountLockedTime")
                .any(|v| v.trim() == PERMANENTLY_LOCKED);
        let configured = self
            .disabled_attribute
            .as_deref()
            .is_some_and(|a| entry.values(a).any(is_true));
        ad_disabled || locked || configured
    }

    pub fn is_service_account(&self, entry: &Entry) -> bool {
        let dn = normalize_dn(&entry.dn);
        self.service_bases.iter().any(|base| dn_under(&dn, base))
            || self
                .service_filter
                .as_ref()
                .is_some_and(|f| f.matches(entry))
    }

    /// The first configured attribute holding a logon time that parses; "never" is none.
    pub fn last_logon(&self, entry: &Entry) -> Option<DateTime<Utc>> {
        self.last_logon_attributes
            .iter()
            .find_map(|a| entry.values(a).find_map(parse_logon_time))
    }
}

pub(crate) fn is_true(value: &str) -> bool {
    ["true", "1", "yes"]
        .iter()
        .any(|t| value.trim().eq_ignore_ascii_case(t))
}

/// A FILETIME count (100 ns since 1601; 0 means never) or a generalized time
/// (`20261126093000Z`, fractions allowed).
pub(crate) fn parse_logon_time(value: &str) -> Option<DateTime<Utc>> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) && value.len() > 14 {
        let ticks: i64 = value.parse().ok()?;
        if ticks <= 0 {
            return None;
        }
        let seconds = ticks / 10_000_000 - FILETIME_UNIX_OFFSET_SECONDS;
        let nanos = (ticks % 10_000_000) * 100;
        return Utc
            .timestamp_opt(seconds, u32::try_from(nanos).ok()?)
            .single();
    }
    let text = value.strip_suffix('Z')?;
    let (whole, _fraction) = text.split_once(['.', ',']).unwrap_or((text, ""));
    let at = NaiveDateTime::parse_from_str(whole, "%Y%m%d%H%M%S").ok()?;
    Some(Utc.from_utc_datetime(&at))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(dn: &str, attrs: &[(&str, &str)]) -> Entry {
        let mut e = Entry {
            dn: dn.into(),
            attrs: Vec::new(),
        };
        for (name, value) in attrs {
            e.push(name, value.to_string());
        }
        e
    }

    #[test]
    fn disabled_is_read_the_way_each_directory_writes_it() {
        let rules = AccountRules::new(&PeopleQuery::default()).unwrap();
        assert!(rules.is_disabled(&entry("cn=a", &[("userAccountControl", "514")])));
        assert!(!rules.is_disabled(&entry("cn=a", &[("userAccountControl", "512")])));
        assert!(rules.is_disabled(&entry("cn=a", &[("nsAccountLock", "TRUE")])));
        assert!(rules.is_disabled(&entry("cn=a", &[("pwdAccountLockedTime", "000001010000Z")])));
        assert!(!rules.is_disabled(&entry(
            "cn=a",
            &[("pwdAccountLockedTime", "20261126093000Z")]
        )));
        assert!(!rules.is_disabled(&entry("cn=a", &[("uid", "a")])));
    }

    #[test]
    fn logon_times_parse_from_filetime_and_generalized_time() {
        let at = parse_logon_time("134396361000000000").unwrap();
        assert_eq!(at.to_rfc3339(), "2026-11-20T08:15:00+00:00");
        assert_eq!(parse_logon_time("0"), None);
        let at = parse_logon_time("20261126093000.123Z").unwrap();
        assert_eq!(at.to_rfc3339(), "2026-11-26T09:30:00+00:00");
        assert_eq!(parse_logon_time("yesterday"), None);
    }

    #[test]
    fn service_accounts_by_base_or_filter() {
        let q = PeopleQuery {
            service_account_bases: vec!["OU=Services,DC=x".into()],
            service_account_filter: Some("(employeeType=service)".into()),
            ..PeopleQuery::default()
        };
        let rules = AccountRules::new(&q).unwrap();
        assert!(rules.is_service_account(&entry("uid=backup,ou=services,dc=x", &[])));
        assert!(rules.is_service_account(&entry(
            "uid=ci,ou=people,dc=x",
            &[("employeeType", "Service")]
        )));
        assert!(!rules.is_service_account(&entry("uid=ann,ou=people,dc=x", &[])));
        assert!(rules.attributes().contains(&"employeeType".to_string()));
    }
}
