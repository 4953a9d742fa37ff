//! OpenID Connect source: the provider's directory over SCIM 2.0 (RFC 7643/7644), read with
//! a client-credentials token (see `oidc.rs`). `/Users` and then `/Groups` are paged with
//! `startIndex` and `count` until `totalResults` is reached, and the count received is checked
//! against it at the end (some servers answer a page past the end with the first page again;
//! a changed or misbehaving server fails the sync rather than yield a partial population).
//! Users map to people (`userName` login, `active`, primary email, the enterprise extension's
//! `manager`); groups to groups, with members that are users or nested groups. SCIM has no
//! standard paging of a group's members, so each group's user members are checked against
//! `/Users?filter=groups.value eq "<id>"` and read from there when the group lists fewer. A
//! refused token is renewed once. Every resource goes into the population hash as received.

use std::collections::HashSet;

use openidconnect::reqwest;
use secrecy::ExposeSecret;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::OidcSourceConfig;
use crate::error::Error;
use crate::sources::oidc::{SOURCE, Tokens, http_client};
use crate::sources::{
    FetchReport, GroupRecord, PersonRecord, RecordSink, SearchRecord, SourceProblem, SourceRecord,
    synthetic_dn,
};

const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const USER_DN: &str = "scim-user";
const GROUP_DN: &str = "scim-group";

/// Reads every user, then every group, of the provider's SCIM directory into `sink`. Blocking.
pub fn fetch(config: &OidcSourceConfig, sink: &mut dyn RecordSink) -> Result<FetchReport, Error> {
    let http = http_client(config)?;
    let tokens = Tokens::discover(config, &http)?;
    let mut reader = ScimReader {
        http,
        tokens,
        base: config.scim.url.trim_end_matches('/').to_string(),
        page_size: config.scim.page_size.max(1),
        hasher: Sha256::new(),
    };
    let mut user_ids: HashSet<String> = HashSet::new();
    let users = reader.list("Users", None, &mut |user| {
        let person = map_user(&user)?;
        if !user_ids.insert(person.external_id.clone()) {
            return Err(misbehaving(format!(
                "user `{}` came twice while paging",
                person.external_id
            )));
        }
        sink.accept(SourceRecord::Person(person))
    })?;

    let mut groups = Vec::new();
    let mut problems = Vec::new();
    let listed = reader.list("Groups", None, &mut |group| {
        let (record, without_value) = map_group(&group, &user_ids)?;
        if without_value > 0 {
            problems.push(SourceProblem {
                kind: "member_without_value",
                subject: record.name.clone(),
                detail: format!("{without_value} member(s) without a `value` were not read"),
            });
        }
        groups.push(record);
        Ok(())
    })?;
    let mut completion = SearchRecord {
        base: format!("{}/Users", reader.base),
        scope: "filter per group".into(),
        filter: "groups.value eq \"<group id>\"".into(),
        attributes: vec!["id".into()],
        entries: 0,
        pages: 0,
        referrals_skipped: Vec::new(),
    };
    let mut seen_groups = HashSet::new();
    for mut group in groups {
        if !seen_groups.insert(group.external_id.clone()) {
            return Err(misbehaving(format!(
                "group `{}` came twice while paging",
                group.external_id
            )));
        }
        if config.scim.verify_group_members {
            problems.extend(reader.complete_members(&mut group, &mut completion)?);
        }
        sink.accept(SourceRecord::Group(group))?;
    }
    let mut searches = vec![users, listed];
    if config.scim.verify_group_members {
        searches.push(completion);
    }
    Ok(FetchReport {
        server: reader.base.clone(),
        bind_identity: Some(format!(
            "client `{}` of {} ({} token(s))",
            config.client_id, config.issuer, reader.tokens.issued
        )),
        page_size: Some(i64::from(reader.page_size)),
        searches,
        raw_sha256: hex::encode(reader.hasher.finalize()),
        problems,
    })
}

struct ScimReader {
    http: reqwest::blocking::Client,
    tokens: Tokens,
    base: String,
    page_size: u32,
    hasher: Sha256,
}

impl ScimReader {
    /// GET `{base}/{path}` with the token; a 401 gets one new token and one more try.
    fn get(&mut self, path: &str, query: &[(&str, String)]) -> Result<Value, Error> {
        let url = format!("{}/{path}", self.base);
        let mut renewed = false;
        loop {
            let token = self.tokens.token(&self.http)?;
            let response = self
                .http
                .get(&url)
                .query(query)
                .bearer_auth(token.expose_secret())
                .header("Accept", "application/scim+json, application/json")
                .send()
                .map_err(|e| Error::source(SOURCE, format!("cannot read {url}: {e}")))?;
            let status = response.status();
            if status == reqwest::StatusCode::UNAUTHORIZED && !renewed {
                renewed = true;
                self.tokens.renew(&self.http)?;
                continue;
            }
            let body = response
                .text()
                .map_err(|e| Error::source(SOURCE, format!("cannot read {url}: {e}")))?;
            if !status.is_success() {
                let detail = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v["detail"].as_str().map(str::to_string))
                    .unwrap_or_default();
                let what = if status == reqwest::StatusCode::UNAUTHORIZED {
                    "the SCIM server refused the access token (a new one too)"
                } else {
                    "the SCIM server answered"
                };
                return Err(Error::source(
                    SOURCE,
                    format!("{what}: {} for {url} {}", status.as_u16(), detail.trim()),
                ));
            }
            return serde_json::from_str(&body)
                .map_err(|e| misbehaving(format!("{url} did not answer SCIM JSON: {e}")));
        }
    }

    /// Pages through `/{resource}` (optionally filtered), handing each resource to
    /// `on_resource`; fails unless exactly `totalResults` resources came.
    fn list(
        &mut self,
        resource: &str,
        filter: Option<&str>,
        on_resource: &mut dyn FnMut(Value) -> Result<(), Error>,
    ) -> Result<SearchRecord, Error> {
        let (mut received, mut pages, mut start) = (0u64, 0u64, 1u64);
        let mut total;
        loop {
            let mut query = vec![
                ("startIndex", start.to_string()),
                ("count", self.page_size.to_string()),
            ];
            if let Some(filter) = filter {
                query.push(("filter", filter.to_string()));
            }
            let page = self.get(resource, &query)?;
            pages += 1;
            total = page["totalResults"]
                .as_u64()
                .ok_or_else(|| misbehaving(format!("/{resource} answered without totalResults")))?;
            let items = page["Resources"].as_array().cloned().unwrap_or_default();
            let count = items.len() as u64;
            for item in items {
                self.hasher.update(serde_json::to_vec(&item)?);
                self.hasher.update(b"\n");
                on_resource(item)?;
            }
            received += count;
            start += count;
            if count == 0 || received >= total {
                break;
            }
        }
        if received != total {
            return Err(misbehaving(format!(
                "/{resource} reported {total} resources but {received} came; the population \
                 would be partial, so the sync is aborted"
            )));
        }
        Ok(SearchRecord {
            base: format!("{}/{resource}", self.base),
            scope: "list".into(),
            filter: filter.unwrap_or_default().to_string(),
            attributes: Vec::new(),
            entries: received,
            pages,
            referrals_skipped: Vec::new(),
        })
    }

    /// Adds the user members a group resource did not list (a capped member list). Nested
    /// groups cut from such a list cannot be read over standard SCIM: that is reported.
    fn complete_members(
        &mut self,
        group: &mut GroupRecord,
        completion: &mut SearchRecord,
    ) -> Result<Option<SourceProblem>, Error> {
        let filter = format!(
            "groups.value eq \"{}\"",
            group.external_id.replace('"', "\\\"")
        );
        let query = [
            ("filter", filter.clone()),
            ("count", "0".to_string()),
            ("attributes", "id".to_string()),
        ];
        let counted = self.get("Users", &query)?;
        completion.pages += 1;
        let total = counted["totalResults"].as_u64().ok_or_else(|| {
            misbehaving(format!(
                "/Users?filter={filter} answered without totalResults, so the members of \
                 `{}` cannot be checked",
                group.name
            ))
        })?;
        let listed: HashSet<String> = group
            .member_dns
            .iter()
            .filter(|dn| dn.starts_with(USER_DN))
            .cloned()
            .collect();
        if total <= listed.len() as u64 {
            return Ok(None);
        }
        let mut added = Vec::new();
        let record = self.list("Users", Some(&filter), &mut |user| {
            if let Some(id) = user["id"].as_str() {
                let dn = synthetic_dn(USER_DN, id);
                if !listed.contains(&dn) {
                    added.push(dn);
                }
            }
            Ok(())
        })?;
        completion.pages += record.pages;
        completion.entries += added.len() as u64;
        let problem = SourceProblem {
            kind: "member_list_capped",
            subject: group.name.clone(),
            detail: format!(
                "the group listed {} of its {total} user members; the rest were read through \
                 /Users?filter=groups.value, but nested groups cut from the list cannot be",
                listed.len()
            ),
        };
        group.member_dns.extend(added);
        Ok(Some(problem))
    }
}

fn misbehaving(detail: String) -> Error {
    Error::source(SOURCE, detail)
}

fn text(value: &Value) -> Option<String> {
    value
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn map_user(user: &Value) -> Result<PersonRecord, Error> {
    let id = text(&user["id"]).ok_or_else(|| misbehaving("a user without an id".into()))?;
    let login = text(&user["userName"])
        .ok_or_else(|| misbehaving(format!("user `{id}` has no userName")))?;
    let emails = user["emails"].as_array().cloned().unwrap_or_default();
    let email = emails
        .iter()
        .find(|e| e["primary"].as_bool() == Some(true))
        .or_else(|| emails.first())
        .and_then(|e| text(&e["value"]));
    let manager = text(&user[ENTERPRISE_USER]["manager"]["value"]);
    Ok(PersonRecord {
        dn: synthetic_dn(USER_DN, &id),
        display_name: text(&user["displayName"])
            .or_else(|| text(&user["name"]["formatted"]))
            .unwrap_or_else(|| login.clone()),
        login,
        email,
        title: text(&user["title"]),
        department: text(&user[ENTERPRISE_USER]["department"]),
        manager_dn: manager.map(|m| synthetic_dn(USER_DN, &m)),
        disabled: user["active"].as_bool() == Some(false),
        service_account: false,
        member_of: Vec::new(),
        gid_number: None,
        last_logon: None,
        external_id: id,
    })
}

/// The group, and how many members came without a `value` (and so could not be read).
fn map_group(group: &Value, user_ids: &HashSet<String>) -> Result<(GroupRecord, usize), Error> {
    let id = text(&group["id"]).ok_or_else(|| misbehaving("a group without an id".into()))?;
    let name = text(&group["displayName"])
        .ok_or_else(|| misbehaving(format!("group `{id}` has no displayName")))?;
    let members = group["members"].as_array().cloned().unwrap_or_default();
    let without_value = members
        .iter()
        .filter(|m| text(&m["value"]).is_none())
        .count();
    let member_dns = members
        .iter()
        .filter_map(|m| {
            let value = text(&m["value"])?;
            let is_group = match m["type"].as_str() {
                Some(kind) => kind.eq_ignore_ascii_case("group"),
                None => !user_ids.contains(&value),
            };
            Some(synthetic_dn(
                if is_group { GROUP_DN } else { USER_DN },
                &value,
            ))
        })
        .collect();
    let record = GroupRecord {
        dn: synthetic_dn(GROUP_DN, &id),
        name,
        description: None,
        member_dns,
        member_logins: Vec::new(),
        gid_number: None,
        owner_dn: None,
        privileged: false,
        external_id: id,
    };
    Ok((record, without_value))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn users_and_groups_map_to_records() {
        let user = json!({
            "id": "u2", "userName": "bob", "active": false,
            "name": {"formatted": "Bob Berg"},
            "emails": [{"value": "b@x"}, {"value": "bob@x", "primary": true}],
            ENTERPRISE_USER: {"manager": {"value": "u1"}}
        });
        let person = map_user(&user).unwrap();
        assert_eq!(
            (person.login.as_str(), person.display_name.as_str()),
            ("bob", "Bob Berg")
        );
        assert_eq!(person.email.as_deref(), Some("bob@x"));
        assert!(person.disabled);
        assert_eq!(person.manager_dn.as_deref(), Some("scim-user=u1"));
        let ids: HashSet<String> = ["u1".to_string()].into();
        let group = json!({
            "id": "g1", "displayName": "admins",
            "members": [{"value": "u1"}, {"value": "g2"}, {"value": "u9", "type": "User"},
                        {"display": "no value"}]
        });
        let (group, without_value) = map_group(&group, &ids).unwrap();
        assert_eq!(without_value, 1);
        assert_eq!(
            group.member_dns,
            vec!["scim-user=u1", "scim-group=g2", "scim-user=u9"]
        );
        assert!(map_user(&json!({"id": "u3"})).is_err());
    }
}
