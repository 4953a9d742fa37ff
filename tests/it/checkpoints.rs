//! Signed checkpoints of the event log, written by the scheduler (the injected clock drives
//! it): the first tick signs the log as it is; a campaign's close is covered at once; an idle
//! log is not signed again. Each checkpoint verifies with the instance's public key, fixes the
//! tree head of exactly its first events, and proves any of them included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attest::campaigns::{CloseRules, close_campaign};
use attest::ledger::checkpoint::{CheckpointKey, leaf_hashes, verify_note};
use attest::ledger::merkle::{inclusion_proof, root, verify_inclusion};
use chrono::Duration;

use crate::open_review::{Open, open_campaign};

/// (size, signed note) of every checkpoint, oldest first.
async fn checkpoints(o: &Open) -> Vec<(i64, String)> {
    o.app
        .blocking(|db, _, _| {
            use attest::db::schema::checkpoints as c;
            use diesel::prelude::*;
            c::table
                .order(c::size.asc())
                .select((c::size, c::signature))
                .load(&mut *db.conn().unwrap())
                .unwrap()
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_signs_checkpoints_that_prove_the_log() {
    let o = open_campaign(|_| {}).await;
    let key = CheckpointKey::from_config(&o.app.config.evidence).unwrap();
    let verifier = key.verifier_key();

    o.app.tick_at(o.opened + Duration::minutes(1)).await;
    let first = checkpoints(&o).await;
    assert_eq!(first.len(), 1);
    let (size, note) = &first[0];
    let checked = verify_note(note, &verifier).unwrap();
    assert_eq!(checked.size, *size as u64);
    let size = *size;
    let leaves = o
        .app
        .blocking(move |db, _, _| leaf_hashes(&mut db.conn().unwrap(), size).unwrap())
        .await;
    assert_eq!(leaves.len() as i64, size);
    assert_eq!(root(&leaves), checked.head);
    for index in [0, leaves.len() / 2, leaves.len() - 1] {
        let proof = inclusion_proof(&leaves, index).unwrap();
        assert!(verify_inclusion(
            &leaves[index],
            index as u64,
            size as u64,
            &proof,
            &checked.head
        ));
    }
    // A note altered after signing is refused.
    let forged = note.replacen(&format!("\n{size}\n"), &format!("\n{}\n", size - 1), 1);
    assert!(verify_note(&forged, &verifier).is_err());

    // A close ten minutes later is covered at once, well within the interval.
    o.app.clock.set(o.opened + Duration::minutes(10));
    let campaign = o.campaign.clone();
    o.app
        .blocking(move |db, clock, _| {
            let now = attest::clock::Clock::now(clock);
            close_campaign(
                &mut db.conn().unwrap(),
                now,
                &campaign,
                &CloseRules::default(),
                "test",
            )
            .unwrap();
        })
        .await;
    o.app.tick_at(o.opened + Duration::minutes(11)).await;
    let after = checkpoints(&o).await;
    assert_eq!(after.len(), 2, "{after:?}");
    let later = verify_note(&after[1].1, &verifier).unwrap();
    assert!(later.size > checked.size);

    // Hours later, with only the checkpoint's own event since: an idle log is not signed
    // again.
    o.app.tick_at(o.opened + Duration::hours(3)).await;
    assert_eq!(checkpoints(&o).await.len(), 2);
    o.app.stop().await;
}
