//! One paged subtree search: a manual Paged Results cookie loop, referrals and any non-zero
//! result refused, and attributes the server returns in ranges (`member;range=0-1499`)
//! completed with follow-up reads of the entry until the last range, before the entry is
//! handed on. Entries are fed to the population hash exactly as received.

use std::fmt::Write as _;
use std::time::Duration;

use ldap3::asn1::parse_tag;
use ldap3::controls::{Control, PagedResults};
use ldap3::{LdapConn, LdapError, LdapResult, Scope, parse_refs};
use sha2::Sha256;

use crate::config::ReferralPolicy;
use crate::error::Error;
use crate::sources::SearchRecord;
use crate::sources::entry::Entry;
use crate::sources::ldap::SOURCE;
use crate::sources::ldap::wire::{hash_entry, parse_entry};

const PAGED_RESULTS_OID: &str = "1.2.840.113556.1.4.319";

/// One paged subtree search and what it needs to report itself.
pub(super) struct SearchSpec<'a> {
    what: &'static str,
    base: &'a str,
    filter: &'a str,
    attributes: &'a [String],
    page_size: i32,
    timeout: Duration,
    /// Window for follow-up reads of ranged attributes; `None` asks for the rest at once.
    range_size: Option<u32>,
    referrals: ReferralPolicy,
}

impl<'a> SearchSpec<'a> {
    pub(super) fn new(
        what: &'static str,
        base: &'a str,
        filter: &'a str,
        attributes: &'a [String],
        page_size: i32,
        timeout: Duration,
    ) -> Self {
        SearchSpec {
            what,
            base,
            filter,
            attributes,
            page_size,
            timeout,
            range_size: None,
            referrals: ReferralPolicy::Fail,
        }
    }

    /// Skips referrals (recording them) instead of failing on them.
    pub(super) fn with_referrals(mut self, policy: ReferralPolicy) -> Self {
        self.referrals = policy;
        self
    }

    /// Reads the rest of ranged attributes in windows of `size` values.
    pub(super) fn with_range_size(mut self, size: Option<u32>) -> Self {
        self.range_size = size;
        self
    }

    pub(super) fn failed(&self, detail: impl std::fmt::Display) -> Error {
        Error::source(
            SOURCE,
            format!(
                "{} search under `{}` failed: {detail}; the population would be partial, \
                 so the sync is aborted",
                self.what, self.base
            ),
        )
    }

    pub(super) fn entry_error(&self, msg: &str) -> Error {
        Error::source(
            SOURCE,
            format!(
                "{msg} ({} search under `{}`); the sync is aborted",
                self.what, self.base
            ),
        )
    }

    /// Pages through the search with a manual cookie loop, feeding every entry to the hash and
    /// to `on_entry` as it arrives; any non-success result fails the search. An entry with an
    /// attribute returned in part (`member;range=0-1499`) waits for the end of its page, when
    /// the connection is free to read the remaining ranges.
    pub(super) fn run(
        &self,
        conn: &mut LdapConn,
        hasher: &mut Sha256,
        on_entry: &mut dyn FnMut(Entry) -> Result<(), Error>,
    ) -> Result<SearchRecord, Error> {
        let (mut entries, mut pages, mut cookie) = (0u64, 0u64, Vec::new());
        let mut partial: Vec<Entry> = Vec::new();
        let mut referrals_skipped = Vec::new();
        loop {
            let control = PagedResults {
                size: self.page_size,
                cookie,
            };
            conn.with_controls(control).with_timeout(self.timeout);
            let mut stream = conn
                .streaming_search(self.base, Scope::Subtree, self.filter, self.attributes)
                .map_err(|e| self.failed(e))?;
            while let Some(item) = stream.next().map_err(|e| self.failed(e))? {
                if item.is_intermediate() {
                    continue;
                }
                if item.is_ref() {
                    let urls = parse_refs(item.0);
                    if self.referrals == ReferralPolicy::Skip {
                        referrals_skipped.extend(urls);
                        continue;
                    }
                    return Err(self.failed(format!(
                        "the server returned a referral to {}; attest does not follow \
                         referrals (set referrals = \"skip\" to skip and list them, and add \
                         that server as a source of its own)",
                        urls.join(", ")
                    )));
                }
                let raw = parse_entry(item.0)
                    .ok_or_else(|| self.failed("the server sent a malformed entry"))?;
                hash_entry(hasher, &raw);
                entries += 1;
                let entry = raw.into_entry();
                if open_range(&entry).is_some() {
                    partial.push(entry);
                } else {
                    on_entry(entry)?;
                }
            }
            let result = stream.result();
            pages += 1;
            let result = match result.success() {
                Ok(result) => result,
                Err(LdapError::LdapResult { result }) => {
                    return Err(self.failed(describe_result(&result)));
                }
                Err(e) => return Err(self.failed(e)),
            };
            for entry in partial.drain(..) {
                on_entry(self.complete_ranges(conn, hasher, entry)?)?;
            }
            match next_cookie(&result.ctrls) {
                Some(next) if !next.is_empty() => cookie = next,
                _ => break,
            }
        }
        Ok(SearchRecord {
            base: self.base.to_string(),
            scope: "sub".into(),
            filter: self.filter.to_string(),
            attributes: self.attributes.to_vec(),
            entries,
            pages,
            referrals_skipped,
        })
    }
}

impl SearchSpec<'_> {
    /// Reads the remaining ranges of every partly returned attribute of `entry`, one window at
    /// a time, until the server marks the last range (`-*`).
    fn complete_ranges(
        &self,
        conn: &mut LdapConn,
        hasher: &mut Sha256,
        mut entry: Entry,
    ) -> Result<Entry, Error> {
        while let Some((index, range)) = open_range(&entry) {
            let next = range.end.map_or(0, |end| end + 1);
            let window = match self.range_size {
                Some(size) => format!("{}-{}", next, next + u64::from(size.max(1)) - 1),
                None => format!("{next}-*"),
            };
            let request = format!("{};range={window}", range.attribute);
            let truncated = |detail: String| {
                self.failed(format!(
                    "reading `{}` of `{}` from value {next}: {detail}",
                    range.attribute, entry.dn
                ))
            };
            let found = conn
                .with_timeout(self.timeout)
                .search(&entry.dn, Scope::Base, "(objectClass=*)", vec![request])
                .map_err(|e| truncated(e.to_string()))?;
            let (results, result) = (found.0, found.1);
            if let Err(e) = result.success() {
                return Err(truncated(match e {
                    LdapError::LdapResult { result } => describe_result(&result),
                    other => other.to_string(),
                }));
            }
            let raw = results
                .into_iter()
                .next()
                .and_then(|r| parse_entry(r.0))
                .ok_or_else(|| truncated("the entry is gone".into()))?;
            hash_entry(hasher, &raw);
            let more = raw.into_entry();
            let continuation = more.attrs.into_iter().find(|(name, _)| {
                parse_range(name).is_some_and(|r| {
                    r.attribute.eq_ignore_ascii_case(&range.attribute) && r.start == next
                })
            });
            let Some((name, values)) = continuation else {
                return Err(truncated(
                    "the server did not return the next range; the group would be truncated".into(),
                ));
            };
            // The range just read is complete; the new one may still be open.
            entry.attrs[index].0 = range.attribute.clone();
            entry.attrs.push((name, values));
        }
        Ok(entry)
    }
}

/// `member;range=1500-2999`: the attribute and the first and last value numbers returned
/// (`None` for `*`, the last range).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ValueRange {
    attribute: String,
    start: u64,
    end: Option<u64>,
}

fn parse_range(name: &str) -> Option<ValueRange> {
    let mut options = name.split(';');
    let attribute = options.next()?.to_string();
    let range = options.find_map(|o| {
        o.strip_prefix("range=")
            .or_else(|| o.strip_prefix("Range="))
            .or_else(|| o.strip_prefix("RANGE="))
    })?;
    let (start, end) = range.split_once('-')?;
    Some(ValueRange {
        attribute,
        start: start.parse().ok()?,
        end: match end {
            "*" => None,
            number => Some(number.parse().ok()?),
        },
    })
}

/// The first attribute of `entry` returned only in part, with its position.
fn open_range(entry: &Entry) -> Option<(usize, ValueRange)> {
    entry.attrs.iter().enumerate().find_map(|(i, (name, _))| {
        parse_range(name)
            .filter(|r| r.end.is_some())
            .map(|r| (i, r))
    })
}

/// The cookie of the Paged Results response control, parsed without panicking on bad input.
fn next_cookie(ctrls: &[Control]) -> Option<Vec<u8>> {
    let raw = ctrls
        .iter()
        .map(|c| &c.1)
        .find(|c| c.ctype == PAGED_RESULTS_OID)?;
    let (_, tag) = parse_tag(raw.val.as_deref()?).ok()?;
    tag.expect_constructed()?
        .into_iter()
        .nth(1)?
        .expect_primitive()
}

/// `<meaning> (<code>)`, then the server's diagnostic text and referral URLs if any.
pub fn describe_result(result: &LdapResult) -> String {
    let mut out = format!("{} ({})", result_code_meaning(result.rc), result.rc);
    if !result.text.is_empty() {
        let _ = write!(out, ": {}", result.text);
    }
    if !result.refs.is_empty() {
        let _ = write!(out, " (referred to {})", result.refs.join(", "));
    }
    out
}

/// The RFC 4511 meaning of an LDAP result code, in words.
fn result_code_meaning(rc: u32) -> &'static str {
    match rc {
        0 => "success",
        1 => "operations error",
        2 => "protocol error",
        3 => "time limit exceeded",
        4 => "size limit exceeded",
        7 => "authentication method not supported",
        8 => "stronger authentication required",
        10 => "referral",
        11 => "administrative limit exceeded",
        12 => "unavailable critical extension",
        13 => "confidentiality required",
        16 => "no such attribute",
        17 => "undefined attribute type",
        18 => "inappropriate matching",
        21 => "invalid attribute syntax",
        32 => "no such object",
        34 => "invalid DN syntax",
        48 => "inappropriate authentication",
        49 => "invalid credentials",
        50 => "insufficient access rights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwilling to perform",
        54 => "loop detected",
        64 => "naming violation",
        65 => "object class violation",
        80 => "other",
        _ => "unexpected result code",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ranged_attribute_names_parse() {
        assert_eq!(
            parse_range("member;range=0-1499"),
            Some(ValueRange {
                attribute: "member".into(),
                start: 0,
                end: Some(1499)
            })
        );
        assert_eq!(parse_range("member;range=1500-*").unwrap().end, None);
        assert_eq!(parse_range("member"), None);
        assert_eq!(parse_range("member;range=x-1"), None);
        let mut entry = Entry::default();
        entry.push("cn", "g".into());
        entry.push("member;range=0-1", "uid=a".into());
        assert_eq!(open_range(&entry).unwrap().0, 1);
        entry.attrs[1].0 = "member;range=0-*".into();
        assert!(open_range(&entry).is_none());
    }

    #[test]
    fn result_codes_are_named() {
        let result = LdapResult {
            rc: 4,
            matched: String::new(),
            text: "limit reached".into(),
            refs: vec![],
            ctrls: vec![],
        };
        assert_eq!(
            describe_result(&result),
            "size limit exceeded (4): limit reached"
        );
        assert_eq!(result_code_meaning(49), "invalid credentials");
        let spec = SearchSpec::new("people", "dc=x", "(uid=*)", &[], 5, Duration::from_secs(1));
        let msg = spec.failed(describe_result(&result)).to_string();
        assert!(msg.contains("(4)") && msg.contains("partial"), "{msg}");
    }
}
