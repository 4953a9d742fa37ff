//! The LDAP filter forms attest evaluates itself, on entries it already has: the LDIF source
//! selects people and groups with them, and any source marks service accounts with one.
//! Supported: `(attr=value)` (case-insensitive, RFC 4515 `\XX` escapes), `(attr=*)`, and
//! `(&...)`, `(|...)`, `(!...)` of those. Anything else is refused, never guessed at.

use crate::error::{ConfigProblem, Error};
use crate::sources::entry::Entry;

/// A parsed filter; values are kept lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Filter {
    Equals(String, String),
    Present(String),
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
}

impl Filter {
    /// Parses `text`, or a configuration problem naming `key`.
    pub fn parse_config(key: &str, text: &str) -> Result<Filter, Error> {
        Filter::parse(text).ok_or_else(|| {
            Error::Config(vec![ConfigProblem::new(
                key,
                format!(
                    "filter `{text}` is not supported here: only (attr=value), (attr=*) and \
                     (&...), (|...), (!...) of those are"
                ),
            )])
        })
    }

    pub fn parse(text: &str) -> Option<Filter> {
        let (filter, rest) = parse_filter(text.trim())?;
        rest.trim().is_empty().then_some(filter)
    }

    /// Every attribute the filter reads.
    pub fn attributes(&self) -> Vec<String> {
        match self {
            Filter::Equals(attr, _) | Filter::Present(attr) => vec![attr.clone()],
            Filter::And(parts) | Filter::Or(parts) => {
                parts.iter().flat_map(Filter::attributes).collect()
            }
            Filter::Not(inner) => inner.attributes(),
        }
    }

    pub fn matches(&self, entry: &Entry) -> bool {
        match self {
            Filter::Equals(attr, value) => entry.values(attr).any(|v| v.to_lowercase() == *value),
            Filter::Present(attr) => entry.values(attr).next().is_some(),
            Filter::And(parts) => parts.iter().all(|f| f.matches(entry)),
            Filter::Or(parts) => parts.iter().any(|f| f.matches(entry)),
            Filter::Not(inner) => !inner.matches(entry),
        }
    }
}

/// One parenthesised filter at the start of `s`, and what follows it.
fn parse_filter(s: &str) -> Option<(Filter, &str)> {
    let inner = s.trim_start().strip_prefix('(')?;
    if let Some(rest) = inner.strip_prefix('&') {
        return combined(rest, Filter::And);
    }
    if let Some(rest) = inner.strip_prefix('|') {
        return combined(rest, Filter::Or);
    }
    if let Some(rest) = inner.strip_prefix('!') {
        let (part, after) = parse_filter(rest)?;
        let after = after.trim_start().strip_prefix(')')?;
        return Some((Filter::Not(Box::new(part)), after));
    }
    let end = inner.find(')')?;
    let (attr, value) = inner[..end].split_once('=')?;
    let attr = attr.trim();
    let attr_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ';');
    if attr.is_empty()
        || !attr.chars().all(attr_ok)
        || value.contains('(')
        || attr.ends_with(['>', '<', '~', ':'])
    {
        return None;
    }
    let filter = match value {
        "*" => Filter::Present(attr.to_string()),
        _ if value.contains('*') => return None,
        _ => Filter::Equals(attr.to_string(), unescape(value)?.to_lowercase()),
    };
    Some((filter, &inner[end + 1..]))
}

/// The filters of an `&` or `|` up to its closing parenthesis, combined with `make`.
fn combined(mut rest: &str, make: fn(Vec<Filter>) -> Filter) -> Option<(Filter, &str)> {
    let mut parts = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix(')') {
            return (!parts.is_empty()).then(|| (make(parts), after));
        }
        let (part, after) = parse_filter(rest)?;
        parts.push(part);
        rest = after;
    }
}

/// Decodes RFC 4515 `\XX` escapes.
fn unescape(value: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(value.len());
    let mut iter = value.bytes();
    while let Some(b) = iter.next() {
        if b == b'\\' {
            let hex = [iter.next()?, iter.next()?];
            bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            bytes.push(b);
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn filter_forms_parse_and_match() {
        let mut e = Entry::default();
        e.push("objectClass", "inetOrgPerson".into());
        e.push("uid", "a(1)".into());
        let f = |s: &str| Filter::parse(s).unwrap();
        assert!(f("(OBJECTCLASS=inetorgperson)").matches(&e));
        assert!(f("(uid=*)").matches(&e));
        assert!(!f("(mail=*)").matches(&e));
        assert!(f(" (&(objectClass=InetOrgPerson) (uid=A\\281\\29)(&(uid=*))) ").matches(&e));
        assert!(!f("(&(objectClass=inetOrgPerson)(mail=*))").matches(&e));
        assert!(f("(|(objectClass=group)(objectClass=inetOrgPerson))").matches(&e));
        assert!(!f("(|(objectClass=group)(mail=*))").matches(&e));
        assert!(f("(&(uid=*)(!(mail=*)))").matches(&e));
        assert!(!f("(!(uid=*))").matches(&e));
    }

    #[test]
    fn unsupported_filters_are_refused() {
        for filter in [
            "(cn=a*)",
            "(a>=1)",
            "(a~=b)",
            "(a:dn:=b)",
            "a=b",
            "(&)",
            "(|)",
            "(!(a=b)(c=d))",
            "(a=b)(c)",
        ] {
            assert!(Filter::parse(filter).is_none(), "{filter}");
        }
    }
}
