//! Rotating the evidence signing key with the real binary: `attest rotate-evidence-key`
//! replaces the key file, the old key endorses the new one in the log, and an auditor who
//! trusts only the old key verifies a pack signed by the new one (and its consistency with an
//! older pack's checkpoint) by following the endorsement. A forged endorsement, or a key no
//! rotation leads to, is refused; the old key can sign nothing after the rotation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use attest::config::EvidenceConfig;
use attest::ledger::checkpoint::{CheckpointKey, write_checkpoint};

use crate::binary::{run, run_ok, write_config};
use crate::common;
use crate::pack_files::{read_entry, reseal};

fn export(dir: &Path, config: &Path, campaign: &str, name: &str) -> std::path::PathBuf {
    let out = dir.join(name);
    run_ok(
        dir,
        config,
        &["export", campaign, "--out", out.to_str().unwrap()],
    );
    out
}

fn verify(
    dir: &Path,
    config: &Path,
    pack: &Path,
    key: &Path,
    previous: Option<&Path>,
) -> (bool, String) {
    let mut args = vec![
        "verify",
        pack.to_str().unwrap(),
        "--public-key",
        key.to_str().unwrap(),
    ];
    if let Some(previous) = previous {
        args.extend(["--previous-checkpoint", previous.to_str().unwrap()]);
    }
    let output = run(dir, config, &args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn a_pack_signed_after_a_rotation_verifies_with_the_old_key_through_its_endorsement() {
    let dir = common::temp_dir();
    let dir = dir.path();
    let config = write_config(dir, None, None, "");
    let key_file = dir.join("evidence-signing.key");
    let old_key = CheckpointKey::from_config(&EvidenceConfig {
        signing_key_file: key_file.clone(),
        ..EvidenceConfig::default()
    })
    .unwrap();
    let old_public = dir.join("old-key.txt");
    std::fs::write(&old_public, format!("{}\n", old_key.verifier_key())).unwrap();

    run_ok(dir, &config, &["sync"]);
    let opened = run_ok(
        dir,
        &config,
        &["campaign", "start", "access-review", "--now"],
    );
    let campaign = opened
        .split_whitespace()
        .nth(2)
        .expect("opened campaign ID ...")
        .to_string();
    let before = export(dir, &config, &campaign, "before.zip");
    let before_checkpoint = dir.join("before-checkpoint.txt");
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&before).unwrap()).unwrap();
    std::fs::write(
        &before_checkpoint,
        read_entry(&mut archive, "checkpoint.txt"),
    )
    .unwrap();

    let rotated = run_ok(dir, &config, &["rotate-evidence-key"]);
    assert!(rotated.contains(&old_key.verifier_key()), "{rotated}");
    let new_key = CheckpointKey::from_config(&EvidenceConfig {
        signing_key_file: key_file.clone(),
        generate_missing_key: false,
        ..EvidenceConfig::default()
    })
    .unwrap();
    assert_ne!(
        new_key.verifier_key(),
        old_key.verifier_key(),
        "the key file holds a new key"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // The pack made after the rotation is signed by the new key and checks with the old one.
    let after = export(dir, &config, &campaign, "after.zip");
    let (ok, text) = verify(dir, &config, &after, &old_public, Some(&before_checkpoint));
    assert!(ok, "{text}");
    assert!(text.contains("1 key rotation"), "{text}");
    assert!(text.contains(&new_key.verifier_key()), "{text}");
    // The older pack still checks with the old key.
    let (ok, text) = verify(dir, &config, &before, &old_public, None);
    assert!(ok, "{text}");

    // A key that no rotation leads to is refused, naming why.
    let stranger = CheckpointKey::from_bytes(&[5u8; 32], "attest");
    let stranger_public = dir.join("stranger.txt");
    std::fs::write(&stranger_public, stranger.verifier_key()).unwrap();
    let (ok, text) = verify(dir, &config, &after, &stranger_public, None);
    assert!(!ok && text.contains("no rotation"), "{text}");

    // Someone holding the new key edits the endorsement and re-signs the whole pack: the old
    // key's signature on the endorsement no longer checks.
    let forged = dir.join("forged.zip");
    reseal(&after, &forged, &new_key, |name, bytes| {
        if name == "key-history.jsonl" {
            let text = String::from_utf8(bytes.clone()).unwrap();
            *bytes = text
                .replace(
                    "attest evidence key rotation",
                    "attest evidence key rotation!",
                )
                .into_bytes();
        }
    });
    let (ok, text) = verify(dir, &config, &forged, &old_public, None);
    assert!(!ok && text.contains("key-history.jsonl"), "{text}");
}

#[test]
fn the_old_key_signs_nothing_after_a_rotation() {
    let dir = common::temp_dir();
    let dir = dir.path();
    let config = write_config(dir, None, None, "");
    let old_bytes = std::fs::read_to_string(dir.join("evidence-signing.key")).unwrap();
    run_ok(dir, &config, &["sync"]);
    run_ok(dir, &config, &["rotate-evidence-key"]);
    // An instance that still holds the old key (not restarted) is refused a checkpoint.
    let stale = dir.join("stale.key");
    std::fs::write(&stale, old_bytes).unwrap();
    let db = attest::db::Database::connect(&attest::config::DatabaseConfig {
        url: format!("sqlite://{}", dir.join("attest.db").display()),
        ..attest::config::DatabaseConfig::default()
    })
    .unwrap();
    run_ok(dir, &config, &["sync"]);
    let key = CheckpointKey::from_config(&EvidenceConfig {
        signing_key_file: stale,
        generate_missing_key: false,
        ..EvidenceConfig::default()
    })
    .unwrap();
    let now = attest::clock::Clock::now(&attest::clock::SystemClock);
    let refused = write_checkpoint(&mut db.conn().unwrap(), now, &key, "test");
    let message = refused.unwrap_err().to_string();
    assert!(message.contains("the evidence key changed"), "{message}");
    // Rotating without a key file says what is missing.
    std::fs::remove_file(dir.join("evidence-signing.key")).unwrap();
    let output = run(dir, &config, &["rotate-evidence-key"]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("evidence.signing_key_file"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
