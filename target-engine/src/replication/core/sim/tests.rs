//! The simulation's runs: seeded, named, and as property tests (see the
//! parent module for what each checks).

use std::collections::BTreeMap;

use bytes::Bytes;

use super::*;

#[test]
fn without_faults_every_copy_ends_equal() {
    for seed in 1..20 {
        let mut sim = Sim::new(seed, 2, 256);
        sim.run_to_end(300, 0);
    }
}

/// A replica that comes back before the control plane has marked it out
/// of sync starts its resync once it has (seed 206 found it).
#[test]
fn with_replicas_lost_and_back_every_copy_ends_equal() {
    let mut sim = Sim::new(206, 1, 384);
    sim.run_to_end(250, 30);
    for seed in 1..40 {
        let mut sim = Sim::new(seed, 2, 512);
        sim.run_to_end(400, 40);
        assert!(sim.acknowledged >= 100, "seed {seed}: most acknowledged: {}", sim.acknowledged);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Random writes, random replica failures and returns, random ordering
    /// of everything that is not one stream: identical images at the end,
    /// and no acknowledged write missing from a replica counted in sync.
    #[test]
    fn replication_keeps_its_promises(seed in proptest::prelude::any::<u64>(), replicas in 1u32..4, faults in 0u64..60) {
        let mut sim = Sim::new(seed, replicas, 384);
        sim.run_to_end(250, faults);
    }

    /// A replica that starts with nothing known of what it missed is
    /// resynced in full, by checksums: the regions that differ are sent and
    /// the others are not; the images end equal (checked by run_to_end).
    #[test]
    fn a_full_resync_sends_only_the_regions_that_differ(seed in proptest::prelude::any::<u64>(), replicas in 1u32..3, stale in 1u64..40, faults in 0u64..40) {
        let mut sim = Sim::with_stale(seed, replicas, 1024, stale);
        sim.run_to_end(200, faults);
    }

    /// The primary lost with operations in flight, a replica in sync
    /// promoted: no acknowledged write is missing from it, the copies in
    /// sync are equal once reconciled, and equal again at the end.
    #[test]
    fn a_promotion_loses_no_acknowledged_write_and_leaves_equal_copies(seed in proptest::prelude::any::<u64>(), replicas in 2u32..4, faults in 0u64..40) {
        promotion(seed, replicas, faults);
    }

    /// The primary's own disk fails operations now and then: while a copy
    /// is in sync it stops serving and the volume is handed over to one
    /// (nothing acknowledged lost, the copies in sync equal once
    /// reconciled); with none, the operation ends MEDIUM ERROR and a copy
    /// being resynced gets the region again (equal images at the end).
    #[test]
    fn a_primary_whose_own_copy_fails_hands_over_and_loses_nothing(seed in proptest::prelude::any::<u64>(), replicas in 1u32..4, faults in 1u64..60) {
        let mut sim = Sim::new(seed, replicas, 384).with_local_failures();
        sim.run_to_end(250, faults);
    }

    /// A replica accepts only the placement it has applied.
    #[test]
    fn a_lower_epoch_is_always_refused(mine in 1u64..100, theirs in 0u64..100, primary in 0u32..3) {
        let mut r = Replica::new(Epoch(mine), 1);
        let hello = r.hello(Epoch(theirs), primary);
        if theirs < mine {
            proptest::prop_assert_eq!(hello.clone(), Err(FromReplica::StaleEpoch { current: Epoch(mine) }));
        }
        if (theirs, primary) != (mine, 1) {
            proptest::prop_assert!(hello.is_err());
        }
        // On an open stream, a frame of another epoch is refused too, never done.
        let mut r = Replica::new(Epoch(mine), 1);
        let stream = r.hello(Epoch(mine), 1).unwrap();
        let out = r.receive(stream, ToReplica::Op { seq: 1, epoch: Epoch(theirs), settled: 1, op: Op::Flush });
        if theirs != mine {
            proptest::prop_assert_eq!(out[0].clone(), ReplicaAction::Send { stream, msg: FromReplica::StaleEpoch { current: Epoch(mine) } });
            let applied = out.iter().any(|a| matches!(a, ReplicaAction::Apply { .. }));
            proptest::prop_assert!(!applied, "a frame of another epoch was applied");
        }
    }
}

/// Writes, faults, the primary lost with operations in flight (each
/// replica gets a random part of what was on its stream), a replica in sync
/// promoted: the copies agree once reconciled (checked in
/// `lose_the_primary`), and the new primary's writes, with more faults,
/// end with every copy equal.
fn promotion(seed: u64, replicas: u32, faults: u64) -> u64 {
    // 64 regions: the activity logs cover a few of them.
    let mut sim = Sim::new(seed, replicas, 8192);
    sim.run_to_end_without_healing(150, faults);
    sim.lose_the_primary();
    sim.run_to_end(150, faults);
    sim.reconciled
}

#[test]
fn a_promoted_replica_reconciles_the_copies_in_sync_by_their_activity_logs() {
    let mut reconciled = 0;
    for seed in 1..60 {
        reconciled += promotion(seed, 2 + (seed % 2) as u32, seed % 3 * 10);
    }
    assert!(reconciled > 40, "copies were reconciled and found equal: {reconciled}");
}

#[test]
fn a_primary_told_of_a_newer_epoch_is_fenced_and_fails_everything() {
    let states = BTreeMap::from([(1, ReplicaState::InSync)]);
    let mut p = Primary::new(Epoch(3), 1 << 20, 1, states);
    let _ = p.connected(1, None);
    let out = p.submit(7, Op::Write { offset: 0, data: Bytes::from(vec![1; 512]), fua: false });
    assert!(out.iter().any(|a| matches!(a, Action::Send { to: 1, .. })));
    let out = p.received(1, FromReplica::StaleEpoch { current: Epoch(4) });
    assert!(out.contains(&Action::Complete { token: 7, result: Err(super::super::primary::Failure::NotReady) }));
    assert!(p.fenced());
    let out = p.submit(8, Op::Flush);
    assert_eq!(out, vec![Action::Complete { token: 8, result: Err(super::super::primary::Failure::NotReady) }]);
    // Demoted for a hand-over (a failback, say) it never reports settled:
    // its copy must not stay in sync.
    let _ = p.demote();
    let out = p.settle_everything(9);
    assert_eq!(out, vec![Action::Complete { token: 9, result: Err(super::super::primary::Failure::NotReady) }]);
}

#[test]
fn nothing_completes_until_a_lost_replica_is_marked_out_of_sync() {
    let states = BTreeMap::from([(1, ReplicaState::InSync)]);
    let mut p = Primary::new(Epoch(1), 1 << 20, 1, states);
    let _ = p.connected(1, None);
    let w = |t: u8| Op::Write { offset: 0, data: Bytes::from(vec![t; 512]), fua: false };
    let out = p.submit(1, w(1));
    let seq = out.iter().find_map(|a| if let Action::ApplyLocal { seq, .. } = a { Some(*seq) } else { None }).unwrap();
    assert!(p.local_done(seq, Ok(())).is_empty(), "waits for the replica");
    let out = p.replica_lost(1);
    assert_eq!(out, vec![Action::RequestOutOfSync { replica: 1, epoch: Epoch(1) }]);
    assert!(p.submit(2, w(2)).is_empty(), "held while frozen");
    let out = p.out_of_sync_confirmed(1);
    assert!(out.contains(&Action::Complete { token: 1, result: Ok(()) }));
    assert!(out.iter().any(|a| matches!(a, Action::ApplyLocal { .. })), "the held write goes on");
    match p.replica(1) {
        Some(ReplicaState::OutOfSync(d)) => assert_eq!(d, &{
            let mut m = DirtyMap::default();
            m.mark(0, 512);
            m
        }),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_lease_that_runs_out_fails_what_is_held() {
    let states = BTreeMap::from([(1, ReplicaState::InSync)]);
    let mut p = Primary::new(Epoch(1), 1 << 20, 1, states);
    let _ = p.connected(1, None);
    let _ = p.replica_lost(1);
    assert!(p.submit(1, Op::Flush).is_empty());
    let out = p.lease_lost();
    assert_eq!(out, vec![Action::Complete { token: 1, result: Err(super::super::primary::Failure::NotReady) }]);
}

/// Growth is ordered after every write before it and sent to the copies
/// in sync; a copy out of sync gets the new bytes as changed (its resync
/// makes them), and a copy lost before it answered the growth too.
#[test]
fn a_copy_that_misses_a_growth_gets_the_new_bytes_in_its_resync() {
    let states = BTreeMap::from([(1, ReplicaState::InSync), (2, ReplicaState::OutOfSync(DirtyMap::default()))]);
    let mut p = Primary::new(Epoch(1), 1 << 20, 1, states);
    let _ = p.connected(1, None);
    let out = p.submit(1, Op::Write { offset: 0, data: Bytes::from(vec![1; 512]), fua: false });
    assert!(out.iter().any(|a| matches!(a, Action::ApplyLocal { .. })));
    let out = p.submit(2, Op::Resize { size: 2 << 20 });
    assert!(!out.iter().any(|a| matches!(a, Action::ApplyLocal { .. })), "the growth waits for the write before it");
    assert!(
        out.iter().any(|a| matches!(a, Action::Send { to: 1, msg: ToReplica::Op { op: Op::Resize { size }, .. } } if *size == 2 << 20)),
        "the copy in sync is sent the growth: {out:?}"
    );
    // The write and the new bytes, whichever way the copy missed them.
    let mut missed = DirtyMap::default();
    missed.mark(0, 512);
    missed.mark(1 << 20, 1 << 20);
    match p.replica(2) {
        Some(ReplicaState::OutOfSync(d)) => assert_eq!(d, &missed),
        other => panic!("{other:?}"),
    }
    // Lost before it answered either.
    let _ = p.replica_lost(1);
    match p.replica(1) {
        Some(ReplicaState::Failing(d)) => assert_eq!(d, &missed),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.submit(3, Op::Resize { size: 1 << 20 }).len(), 0, "held while frozen; never a shrink either way");
}

/// A region written while its copy is in flight is copied again, after
/// that copy, never beside it (seed 15787094812687924376 found a second
/// copy of the region overwriting an acknowledged write on the replica).
#[test]
fn a_region_changed_during_its_copy_is_copied_again_after_it() {
    let mut sim = Sim::new(15787094812687924376, 1, 384);
    sim.run_to_end(250, 7);
}

/// A full resync by checksums: regions equal on the replica are not sent.
/// (Writes that land on a region while it is being checked make it checked
/// again, and then sent, so only most regions are skipped.)
#[test]
fn a_full_resync_skips_the_regions_that_match() {
    for seed in 1..10 {
        // 64 regions of 64 KiB; one stale block in the replica's image.
        let blocks = 8192;
        let mut sim = Sim::with_stale(seed, 1, blocks, 1);
        sim.run_to_end(10, 0);
        let p = sim.primary.progress(1);
        let size = blocks * BLOCK as u64;
        assert!(p.copied_bytes > 0, "seed {seed}: the stale region was sent: {p:?}");
        assert!(p.copied_bytes < size / 4, "seed {seed}: most regions were not sent: {p:?}");
        assert!(p.matched_bytes + p.copied_bytes >= size, "seed {seed}: every region was checked or sent: {p:?}");
    }
}

/// A mark the control plane refuses because the placement moved past this
/// primary's epoch fences it: what waited fails NOT READY, nothing more is
/// admitted.
#[test]
fn a_primary_whose_mark_is_refused_for_a_newer_epoch_is_fenced() {
    let states = BTreeMap::from([(1, ReplicaState::InSync)]);
    let mut p = Primary::new(Epoch(3), 1 << 20, 1, states);
    let _ = p.connected(1, None);
    let out = p.submit(7, Op::Write { offset: 0, data: Bytes::from(vec![1; 512]), fua: false });
    assert!(out.iter().any(|a| matches!(a, Action::Send { to: 1, .. })));
    let _ = p.replica_lost(1);
    assert!(p.superseded(Epoch(3)).is_empty(), "its own epoch: nothing happens");
    let out = p.superseded(Epoch(4));
    assert!(out.contains(&Action::Complete { token: 7, result: Err(super::super::primary::Failure::NotReady) }));
    assert!(p.fenced());
}

/// How many seeds the long runs below take: `SIM_SEEDS=N` (default 100,
/// a few seconds); `SIM_SEED=S` replays one.
fn seeds() -> std::ops::Range<u64> {
    let var = |name| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    match (var("SIM_SEED"), var("SIM_SEEDS")) {
        (Some(seed), _) => seed..seed + 1,
        (None, n) => 1..1 + n.unwrap_or(100),
    }
}

/// Runs `run` for every seed of [`seeds`]; a failing seed panics with the
/// seed to replay and the run's last events.
fn every_seed(name: &str, run: impl Fn(u64) + std::panic::RefUnwindSafe) {
    for seed in seeds() {
        TRACE.with(|t| t.borrow_mut().clear());
        if let Err(e) = std::panic::catch_unwind(|| run(seed)) {
            let why = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
            let events = TRACE.with(|t| t.borrow().iter().cloned().collect::<Vec<_>>().join("\n  "));
            panic!(
                "{name}: seed {seed} failed: {}\nreplay: SIM_SEED={seed} cargo test -p target-engine --lib {name}\nlast events:\n  {events}",
                why.unwrap_or_default()
            );
        }
    }
}

/// Replicas that lose power with writes in their cache, streams lost,
/// marks whose outcome is unknown, lease flaps: every copy ends equal
/// (a copy that lost power is resynced with what it had not flushed), no
/// acknowledged write is missing from a copy the cluster counts in sync.
#[test]
fn replicas_losing_power_are_resynced_with_what_they_had_not_flushed() {
    every_seed("replicas_losing_power_are_resynced_with_what_they_had_not_flushed", |seed| {
        let mut sim = Sim::new(seed, 1 + (seed % 3) as u32, 2048).with_power_loss();
        sim.run_to_end(250, 20 + seed % 40);
    });
}

/// The primary lost after writes, lease flaps, unknown marks and power
/// losses; a replica the cluster counts in sync (and that kept its power)
/// promoted: the copies agree once reconciled, and at the end.
#[test]
fn a_promotion_after_lease_flaps_and_unknown_marks_leaves_equal_copies() {
    every_seed("a_promotion_after_lease_flaps_and_unknown_marks_leaves_equal_copies", |seed| {
        let mut sim = Sim::new(seed, 2 + (seed % 2) as u32, 2048).with_power_loss();
        sim.run_to_end_without_healing(150, 10 + seed % 40);
        sim.lose_the_primary();
        sim.run_to_end(150, seed % 30);
    });
}

/// Lease lost while operations are in flight on the replicas: they are
/// answered NOT READY, yet stay unsettled until every in-sync copy has
/// done them, so the next operation does not tell the replicas to drop
/// them from their activity logs (a promotion would not see them).
#[test]
fn a_lease_lost_with_operations_in_flight_keeps_them_unsettled() {
    let states = BTreeMap::from([(1, ReplicaState::InSync)]);
    let mut p = Primary::new(Epoch(1), 1 << 20, 1, states);
    let _ = p.connected(1, None);
    let w = |t: u8| Op::Write { offset: u64::from(t) * 4096, data: Bytes::from(vec![t; 512]), fua: false };
    let out = p.submit(1, w(1));
    assert!(out.iter().any(|a| matches!(a, Action::Send { to: 1, msg: ToReplica::Op { seq: 1, settled: 1, .. } })));
    let out = p.lease_lost();
    assert_eq!(out, vec![Action::Complete { token: 1, result: Err(super::super::primary::Failure::NotReady) }]);
    let _ = p.lease_renewed();
    let out = p.submit(2, w(2));
    let settled = out.iter().find_map(|a| match a {
        Action::Send { msg: ToReplica::Op { seq: 2, settled, .. }, .. } => Some(*settled),
        _ => None,
    });
    assert_eq!(settled, Some(1), "operation 1 is not settled: the replica has not answered it");
    assert_eq!(p.backlog(), (2, 0));
    let _ = p.local_done(1, Ok(()));
    let _ = p.received(1, FromReplica::Done { seq: 1 });
    let out = p.submit(3, w(3));
    let settled = out.iter().find_map(|a| match a {
        Action::Send { msg: ToReplica::Op { seq: 3, settled, .. }, .. } => Some(*settled),
        _ => None,
    });
    assert_eq!(settled, Some(2), "settled once every copy has done it");
}

/// A mark whose outcome is unknown is asked again, and meanwhile the
/// replica is waited for as if it were in sync; only a certain refusal
/// lets writes go on without it.
#[test]
fn an_in_sync_mark_of_unknown_outcome_is_asked_again_and_the_replica_waited_for() {
    use super::super::primary::{Mark, MarkAnswer, MarkStep};
    let mut all = DirtyMap::default();
    all.mark(0, 512);
    let states = BTreeMap::from([(1, ReplicaState::OutOfSync(all))]);
    let mut p = Primary::new(Epoch(1), 1 << 20, 1, states);
    let out = p.connected(1, None);
    let Some(Action::ReadForCopy { seq, .. }) = out.iter().find(|a| matches!(a, Action::ReadForCopy { .. })).cloned()
    else {
        panic!("{out:?}")
    };
    let _ = p.copy_read(seq, Ok(Bytes::from(vec![0; 65536])));
    let out = p.received(1, FromReplica::Done { seq });
    assert_eq!(out, vec![Action::RequestInSync { replica: 1, epoch: Epoch(1) }]);
    assert_eq!(p.mark_answered(1, Mark::InSync, MarkAnswer::Unknown), MarkStep::AskAgain);
    assert_eq!(p.replica(1), Some(&ReplicaState::Catching));
    // A write waits for it.
    let out = p.submit(9, Op::Write { offset: 0, data: Bytes::from(vec![1; 512]), fua: false });
    let seq = out.iter().find_map(|a| if let Action::ApplyLocal { seq, .. } = a { Some(*seq) } else { None }).unwrap();
    assert!(p.local_done(seq, Ok(())).is_empty(), "the write waits for the replica whose mark is unknown");
    assert!(matches!(p.mark_answered(1, Mark::InSync, MarkAnswer::Made), MarkStep::Done(_)));
    assert_eq!(p.replica(1), Some(&ReplicaState::InSync));
    // Lost: an out-of-sync mark refused at this epoch (the copy is being
    // reconfigured) is asked again; refused for a newer epoch, it fences.
    let _ = p.replica_lost(1);
    assert_eq!(p.mark_answered(1, Mark::OutOfSync, MarkAnswer::Refused { current: Epoch(1) }), MarkStep::AskAgain);
    assert_eq!(p.mark_answered(1, Mark::OutOfSync, MarkAnswer::Unknown), MarkStep::AskAgain);
    assert_eq!(
        p.mark_answered(1, Mark::OutOfSync, MarkAnswer::Refused { current: Epoch(2) }),
        MarkStep::Done(vec![Action::Complete { token: 9, result: Err(super::super::primary::Failure::NotReady) }])
    );
    assert!(p.fenced());
}

/// Seeds that found a loss in the code before its fix, kept as named runs.
/// Seed 59: a replica lost power with writes it had acknowledged from its
/// cache; resynced only with what it had not acknowledged, it was marked
/// in sync without them.
#[test]
fn seed_59_a_replica_that_lost_power_is_resynced_with_what_it_had_cached() {
    let mut sim = Sim::new(59, 3, 2048).with_power_loss();
    sim.run_to_end(250, 39);
}

/// Seed 99: the lease flapped with writes in flight; the next write told
/// the replicas they were settled, one dropped them from its activity log,
/// and after a promotion the copies in sync differed.
#[test]
fn seed_99_a_lease_flap_keeps_writes_in_flight_in_the_activity_logs() {
    let mut sim = Sim::new(99, 3, 2048).with_power_loss();
    sim.run_to_end_without_healing(150, 10 + 99 % 40);
    sim.lose_the_primary();
    sim.run_to_end(150, 99 % 30);
}

/// Seed 30: a replica caught up while a write it had been sent was
/// answered without it; the cluster marked it in sync before it had done
/// that write.
#[test]
fn seed_30_a_caught_up_replica_is_marked_in_sync_only_once_it_owes_nothing() {
    let mut sim = Sim::new(30, 1, 384).with_power_loss();
    sim.run_to_end(250, 50);
}

/// Issue 29, finding 8: the primary's own disk fails writes that its
/// replicas did. Before the fix it answered MEDIUM ERROR and went on
/// serving from a copy that differed from the in-sync ones (the images
/// differed at the end); now it stops and the volume is handed over.
#[test]
fn a_primary_whose_own_copy_fails_a_write_stops_and_hands_over() {
    let handovers = std::sync::atomic::AtomicU64::new(0);
    every_seed("a_primary_whose_own_copy_fails_a_write_stops_and_hands_over", |seed| {
        let mut sim = Sim::new(seed, 1 + (seed % 3) as u32, 1024).with_local_failures();
        sim.run_to_end(250, 5 + seed % 30);
        handovers.fetch_add(sim.handovers, std::sync::atomic::Ordering::Relaxed);
    });
    let handovers = handovers.into_inner();
    assert!(handovers >= seeds().count() as u64 / 4, "hand-overs happened: {handovers}");
}

#[test]
fn a_failed_local_write_with_a_copy_in_sync_ends_not_ready_and_asks_to_hand_over() {
    let states = BTreeMap::from([(1, ReplicaState::InSync)]);
    let mut p = Primary::new(Epoch(4), 1 << 20, 1, states);
    let _ = p.connected(1, None);
    let out = p.submit(7, Op::Write { offset: 0, data: Bytes::from(vec![1; 512]), fua: false });
    let seq = out.iter().find_map(|a| if let Action::ApplyLocal { seq, .. } = a { Some(*seq) } else { None }).unwrap();
    let _ = p.received(1, FromReplica::Done { seq });
    let out = p.local_done(seq, Err("EIO".into()));
    assert!(out.contains(&Action::OwnCopyFailed { epoch: Epoch(4) }), "{out:?}");
    assert!(
        out.contains(&Action::Complete { token: 7, result: Err(super::super::primary::Failure::NotReady) }),
        "{out:?}"
    );
    assert!(p.own_copy_has_failed());
    let out = p.submit(8, Op::Flush);
    assert_eq!(out, vec![Action::Complete { token: 8, result: Err(super::super::primary::Failure::NotReady) }]);
}

#[test]
fn a_failed_local_write_with_no_copy_in_sync_ends_medium_error_and_serves_on() {
    let mut p = Primary::new(Epoch(4), 1 << 20, 1, BTreeMap::new());
    let out = p.submit(7, Op::Write { offset: 0, data: Bytes::from(vec![1; 512]), fua: false });
    let seq = out.iter().find_map(|a| if let Action::ApplyLocal { seq, .. } = a { Some(*seq) } else { None }).unwrap();
    let out = p.local_done(seq, Err("EIO".into()));
    assert_eq!(
        out,
        vec![Action::Complete { token: 7, result: Err(super::super::primary::Failure::Local("EIO".into())) }]
    );
    assert!(!p.own_copy_has_failed());
}

/// The primary lost with operations in flight, and the replica promoted in
/// its place lost in turn before it has reconciled the copies: the next
/// one reconciles by its own log and the others' (which still hold the
/// first primary's last regions), and the copies agree.
#[test]
fn a_second_failover_during_reconciliation_leaves_equal_copies() {
    let second = std::sync::atomic::AtomicU64::new(0);
    every_seed("a_second_failover_during_reconciliation_leaves_equal_copies", |seed| {
        let mut sim = Sim::new(seed, 3, 2048).with_power_loss();
        sim.run_to_end_without_healing(150, 10 + seed % 40);
        let mut sim = sim.with_second_failover();
        sim.lose_the_primary();
        if !sim.second_failovers {
            second.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        sim.run_to_end(150, seed % 30);
    });
    let second = second.into_inner();
    assert!(second >= seeds().count() as u64 / 10, "second failovers happened: {second}");
}

/// Demotions for planned hand-overs among the faults: the primary either
/// resumes (the move did not happen) or settles everything with a final
/// flush and the volume is handed over; nothing acknowledged is lost and
/// the copies end equal.
#[test]
fn demotions_that_resume_or_hand_over_lose_nothing() {
    let handovers = std::sync::atomic::AtomicU64::new(0);
    every_seed("demotions_that_resume_or_hand_over_lose_nothing", |seed| {
        let mut sim = Sim::new(seed, 1 + (seed % 3) as u32, 1024).with_demotions();
        sim.run_to_end(250, 5 + seed % 20);
        handovers.fetch_add(sim.handovers, std::sync::atomic::Ordering::Relaxed);
    });
    let handovers = handovers.into_inner();
    assert!(handovers >= seeds().count() as u64 / 25, "hand-overs happened: {handovers}");
}
