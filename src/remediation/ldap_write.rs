//! `mode = "ldap"`: removes a membership in the directory with the write-capable account of
//! `[sources.NAME.remediation]`. It first asks the server which of the holding group's member
//! attributes name the person (LDAP compare: read-only, exact, and cheap even on a group of
//! a million members), then deletes exactly those values in one modify. A value that is no
//! longer there is nothing to remove, so running a task twice removes once. Errors carry the
//! directory's result code and text; the password never appears in one.

use std::collections::HashSet;

use ldap3::{LdapConn, LdapError, Mod};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::config::{LdapSourceConfig, RemediationConfig, resolve_secret};
use crate::error::{ConfigProblem, Error};
use crate::remediation::ActionError;
use crate::remediation::targets::{Group, Person};
use crate::sources::ldap::{connect_as, describe_result};

/// LDAP result codes that say an attribute cannot hold the value here.
const NO_SUCH_ATTRIBUTE: u32 = 16;
const UNDEFINED_ATTRIBUTE_TYPE: u32 = 17;
const OBJECT_CLASS_VIOLATION: u32 = 65;

/// One member value to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    pub attribute: String,
    pub value: String,
}

/// LDAP result codes that say there is nothing here to compare or delete.
const NO_SUCH_OBJECT: u32 = 32;

/// A bound connection for a source's removals.
pub struct LdapWriter<'a> {
    conn: LdapConn,
    source: &'a LdapSourceConfig,
}

impl<'a> LdapWriter<'a> {
    /// Connects and binds as the remediation account (TLS as for the source).
    pub fn open(
        source: &'a LdapSourceConfig,
        remediation: &RemediationConfig,
    ) -> Result<LdapWriter<'a>, ActionError> {
        let password = resolve_secret(
            "remediation.bind_password",
            remediation.bind_password.as_ref(),
            remediation.bind_password_file.as_deref(),
        )
        .map_err(|p| ActionError::Unavailable(Error::Config(vec![p]).to_string()))?
        .ok_or_else(|| {
            ActionError::Unavailable(
                Error::Config(vec![ConfigProblem::new(
                    "remediation.bind_password_file",
                    "no password for the write-capable account",
                )])
                .to_string(),
            )
        })?;
        let conn = connect_as(source, &remediation.bind_dn, password.expose_secret())
            .map_err(|e| ActionError::Unavailable(e.to_string()))?;
        Ok(LdapWriter { conn, source })
    }

    /// The member values of `group` that name `person` now, asked of the server (none when
    /// the group is gone).
    pub fn values_naming(
        &mut self,
        group: &Group,
        person: &Person,
    ) -> Result<Vec<MemberValue>, ActionError> {
        let mut candidates: Vec<MemberValue> = self
            .source
            .groups
            .member_attributes
            .iter()
            .map(|attribute| MemberValue {
                attribute: attribute.clone(),
                value: person.dn.clone(),
            })
            .collect();
        let uid_attribute = &self.source.groups.member_uid_attribute;
        if !uid_attribute.is_empty() {
            candidates.push(MemberValue {
                attribute: uid_attribute.clone(),
                value: person.login.clone(),
            });
        }
        let mut held = Vec::new();
        for candidate in candidates {
            let answer = self
                .conn
                .compare(&group.dn, &candidate.attribute, &candidate.value)
                .map_err(|e| failed(&group.dn, "compare", e))?;
            match answer.0.rc {
                6 => held.push(candidate),
                5 | NO_SUCH_ATTRIBUTE | UNDEFINED_ATTRIBUTE_TYPE => {}
                NO_SUCH_OBJECT => return Ok(Vec::new()),
                _ => {
                    return Err(ActionError::Refused(format!(
                        "cannot read {} of {}: {}",
                        candidate.attribute,
                        group.dn,
                        describe_result(&answer.0)
                    )));
                }
            }
        }
        Ok(held)
    }

    /// Deletes `values` from `group`, one modify each (a modify is all or nothing: a value
    /// another writer removed first would otherwise fail the others). A value already gone
    /// is not an error.
    pub fn remove(&mut self, group: &Group, values: &[MemberValue]) -> Result<(), ActionError> {
        for value in values {
            let delete = vec![Mod::Delete(
                value.attribute.clone(),
                HashSet::from([value.value.clone()]),
            )];
            let result = self
                .conn
                .modify(&group.dn, delete)
                .map_err(|e| failed(&group.dn, "modify", e))?;
            match result.rc {
                0 | NO_SUCH_ATTRIBUTE => {}
                // groupOfNames and groupOfUniqueNames must keep one member.
                OBJECT_CLASS_VIOLATION => {
                    return Err(ActionError::Refused(format!(
                        "the directory refused to change {}: {} (a group of this kind must \
                         keep at least one member: remove the access by hand or add a \
                         placeholder member)",
                        group.dn,
                        describe_result(&result)
                    )));
                }
                _ => {
                    return Err(ActionError::Refused(format!(
                        "the directory refused to change {}: {}",
                        group.dn,
                        describe_result(&result)
                    )));
                }
            }
        }
        Ok(())
    }

    pub fn close(mut self) {
        // Best effort: the work is done or failed already.
        let _ = self.conn.unbind();
    }
}

/// An operation's failure: a result code is the directory's refusal; anything else (a
/// broken connection, a timeout) means it could not be asked.
fn failed(dn: &str, what: &str, e: LdapError) -> ActionError {
    match e {
        LdapError::LdapResult { result } => ActionError::Refused(format!(
            "{what} of {dn} failed: {}",
            describe_result(&result)
        )),
        other => ActionError::Unavailable(format!("{what} of {dn} failed: {other}")),
    }
}

/// The action recorded for a removal (no person's DN: the item names the person).
pub fn removal_action(
    holder: &Group,
    reviewed: &Group,
    via: Option<&str>,
    values: &[MemberValue],
    dry_run: bool,
) -> Value {
    json!({
        "kind": "ldap_remove_member",
        "dry_run": dry_run,
        "group_dn": holder.dn,
        "group": holder.name,
        "reviewed_group": reviewed.name,
        "via": via,
        "through_nested_group": holder.external_id != reviewed.external_id,
        "attributes": values.iter().map(|v| v.attribute.as_str()).collect::<Vec<_>>(),
    })
}
