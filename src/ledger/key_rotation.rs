//! Replacing the evidence signing key (`attest rotate-evidence-key`), for a key that may have
//! leaked or has simply served long enough. The old key first signs a checkpoint of the log
//! as it stands, then signs an endorsement of the new key; the endorsement goes into the log
//! (`evidence.key_rotated`) and into every later pack (`key-history.jsonl`), so that an
//! auditor who trusts the old key can follow the chain offline (`attest verify --public-key
//! OLD`) to the key that signs newer packs. The new key replaces the old one in
//! `evidence.signing_key_file` (the old secret is gone) and signs the next checkpoint, which
//! must extend the old key's. An instance still holding the old key can sign nothing after
//! that: every instance is restarted after a rotation.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::EvidenceConfig;
use crate::db::schema::events;
use crate::db::{DbConnection, write_tx};
use crate::error::{ConfigProblem, Error, Result};
use crate::ledger::checkpoint::{
    CheckpointKey, verify_signed, write_checkpoint, write_private_temporary,
};
use crate::ledger::events::{EventKind, append};

/// The subject of rotation events (so that they are found by the subject index).
const SUBJECT: &str = "evidence-signing-key";

/// One rotation as packs carry it: the old key's signed endorsement of the new one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyEndorsement {
    /// The old verifier key (`origin+id+key`).
    pub from: String,
    /// The new verifier key.
    pub to: String,
    /// A signed note by `from` whose body is `endorsement_body(origin, from, to)`.
    pub endorsement: String,
}

/// What a rotation did.
#[derive(Debug, Clone, Serialize)]
pub struct Rotated {
    pub from: String,
    pub to: String,
    /// The size of the old key's last checkpoint and of the new key's first.
    pub last_old_checkpoint: Option<i64>,
    pub first_new_checkpoint: Option<i64>,
}

/// The text an old key signs to endorse its successor.
pub fn endorsement_body(origin: &str, from: &str, to: &str) -> String {
    format!("attest evidence key rotation\n{origin}\nfrom {from}\nto {to}\n")
}

impl KeyEndorsement {
    /// Checks that `from` signed this endorsement of `to`.
    pub fn check(&self) -> Result<()> {
        let origin = self.from.split('+').next().unwrap_or_default();
        let body = verify_signed(&self.endorsement, &self.from)?;
        if body != endorsement_body(origin, &self.from, &self.to) {
            return Err(Error::BadRequest(
                "the endorsement signs another text than this rotation".into(),
            ));
        }
        Ok(())
    }
}

/// Replaces the key in `config.signing_key_file` with a new random one, endorsed by the old
/// one in the log, with a checkpoint by each key. Run it with every instance stopped.
pub fn rotate(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    config: &EvidenceConfig,
    actor: &str,
) -> Result<Rotated> {
    let path = &config.signing_key_file;
    if !path.exists() {
        return Err(Error::Config(vec![ConfigProblem::new(
            "evidence.signing_key_file",
            format!(
                "{} does not exist: there is no key to rotate",
                path.display()
            ),
        )]));
    }
    let old = CheckpointKey::from_config(config)?;
    let last_old_checkpoint = write_checkpoint(conn, now, &old, actor)?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let new = CheckpointKey::from_bytes(&bytes, &config.origin);
    let (from, to) = (old.verifier_key(), new.verifier_key());
    let endorsement = old.sign_body(&endorsement_body(&config.origin, &from, &to));
    let temporary = write_private_temporary(path, &bytes)?;
    let recorded = write_tx(conn, |conn| {
        append(
            conn,
            now,
            EventKind::EvidenceKeyRotated,
            actor,
            Some(SUBJECT),
            &json!({
                "from_key_id": old.key_id_hex(),
                "to_key_id": new.key_id_hex(),
                "from": from,
                "to": to,
                "endorsement": endorsement,
            }),
        )
    });
    if let Err(e) = recorded {
        let _ = std::fs::remove_file(&temporary);
        return Err(e);
    }
    std::fs::rename(&temporary, path).map_err(|e| {
        Error::Io(format!(
            "the rotation is in the log, but {} could not replace {}: {e}; move it into place \
             by hand before starting attest",
            temporary.display(),
            path.display()
        ))
    })?;
    let first_new_checkpoint = write_checkpoint(conn, now, &new, actor)?;
    tracing::warn!(
        from = %old.key_id_hex(),
        to = %new.key_id_hex(),
        "evidence signing key rotated: restart every instance"
    );
    Ok(Rotated {
        from,
        to,
        last_old_checkpoint,
        first_new_checkpoint,
    })
}

/// Every rotation in the log, oldest first.
pub fn history(conn: &mut DbConnection) -> Result<Vec<KeyEndorsement>> {
    let payloads: Vec<String> = events::table
        .filter(events::subject.eq(SUBJECT))
        .filter(events::kind.eq(EventKind::EvidenceKeyRotated.as_str()))
        .order(events::seq.asc())
        .select(events::payload)
        .load(conn)?;
    payloads
        .iter()
        .map(|payload| Ok(serde_json::from_str::<KeyEndorsement>(payload)?))
        .collect()
}

/// Whether the log records a rotation from the key with id `from` to the one with id `to`.
pub fn endorsed(conn: &mut DbConnection, from: &str, to: &str) -> Result<bool> {
    let payloads: Vec<String> = events::table
        .filter(events::subject.eq(SUBJECT))
        .filter(events::kind.eq(EventKind::EvidenceKeyRotated.as_str()))
        .select(events::payload)
        .load(conn)?;
    Ok(payloads.iter().any(|payload| {
        serde_json::from_str::<serde_json::Value>(payload)
            .is_ok_and(|v| v["from_key_id"] == from && v["to_key_id"] == to)
    }))
}

/// The chain of endorsements from the trusted key to the key that signed a pack: the keys
/// along it (the trusted key first), or why there is none. Each step must be signed by the
/// key before it.
pub fn chain_to(
    trusted: &str,
    signer: &str,
    rotations: &[KeyEndorsement],
) -> std::result::Result<Vec<String>, String> {
    let mut keys = vec![trusted.to_string()];
    let mut current = trusted.to_string();
    while current != signer {
        let Some(step) = rotations.iter().find(|r| r.from == current) else {
            return Err(format!(
                "the pack is signed by key {}, and no rotation in key-history.jsonl leads to it \
                 from the key you trust ({})",
                key_name(signer),
                key_name(&current)
            ));
        };
        step.check().map_err(|e| {
            format!(
                "key-history.jsonl: the rotation from {}: {e}",
                key_name(&current)
            )
        })?;
        if keys.contains(&step.to) {
            return Err("key-history.jsonl: the rotations go round in a circle".into());
        }
        current = step.to.clone();
        keys.push(current.clone());
    }
    Ok(keys)
}

/// A verifier key as messages name it: `origin+id`.
fn key_name(verifier: &str) -> String {
    verifier
        .rsplit_once('+')
        .map_or(verifier, |(name, _)| name)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rotation(from: &CheckpointKey, to: &CheckpointKey) -> KeyEndorsement {
        let (f, t) = (from.verifier_key(), to.verifier_key());
        KeyEndorsement {
            endorsement: from.sign_body(&endorsement_body(from.origin(), &f, &t)),
            from: f,
            to: t,
        }
    }

    #[test]
    fn a_chain_of_signed_rotations_leads_from_the_trusted_key_to_the_signer() {
        let keys: Vec<_> = (1u8..=3)
            .map(|n| CheckpointKey::from_bytes(&[n; 32], "attest.test"))
            .collect();
        let rotations = vec![rotation(&keys[0], &keys[1]), rotation(&keys[1], &keys[2])];
        let (first, last) = (keys[0].verifier_key(), keys[2].verifier_key());
        assert_eq!(chain_to(&first, &last, &rotations).unwrap().len(), 3);
        assert_eq!(chain_to(&last, &last, &[]).unwrap(), vec![last.clone()]);

        // An endorsement the old key did not sign, or that names another key, breaks it.
        let stranger = CheckpointKey::from_bytes(&[9; 32], "attest.test");
        let mut forged = rotation(&stranger, &keys[2]);
        forged.from = keys[1].verifier_key();
        let broken = vec![rotation(&keys[0], &keys[1]), forged];
        assert!(
            chain_to(&first, &last, &broken)
                .unwrap_err()
                .contains("rotation from")
        );
        let mut renamed = rotation(&keys[1], &stranger);
        renamed.to = last.clone();
        let broken = vec![rotation(&keys[0], &keys[1]), renamed];
        assert!(chain_to(&first, &last, &broken).is_err());
        // No rotation from the trusted key at all.
        let refused = chain_to(&stranger.verifier_key(), &last, &rotations).unwrap_err();
        assert!(refused.contains("no rotation"), "{refused}");
    }
}
