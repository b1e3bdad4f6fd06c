//! Write-cache policies end to end through the SCSI layer, on a backend
//! that loses what was not flushed when the power goes (SBC-3 §4.15: with
//! WCE zero, or FUA, data is on the medium before GOOD).

use std::sync::Arc;
use std::time::Duration;

use super::lu::Reply;
use super::sense::{SenseReason, UnitAttention};
use super::testkit::{self, nexus_id, unit_on};
use super::{LogicalUnit, LunMap, Nexus, WriteCache};
use crate::backend::group_commit::GroupCommit;
use crate::backend::power_cut::PowerCutBackend;

const BLOCKS: u64 = 512;

fn unit(policy: WriteCache, flush_ms: u64) -> (LunMap, Arc<LogicalUnit>, Arc<PowerCutBackend>) {
    let disk = Arc::new(PowerCutBackend::new(BLOCKS * 512));
    disk.set_flush_delay(Duration::from_millis(flush_ms));
    let (luns, lu) = unit_on(Arc::new(GroupCommit::new(disk.clone())), 512);
    lu.open_state(None, policy).unwrap();
    (luns, lu, disk)
}

async fn ready(luns: &LunMap, n: u8) -> Nexus {
    let nexus = Nexus::new(nexus_id(n));
    let _ = testkit::run(luns, &nexus, 0, &[0x00], &[]).await;
    nexus
}

async fn run(luns: &LunMap, n: &Nexus, cdb: &[u8], data: &[u8]) -> Result<Reply, SenseReason> {
    testkit::outcome(luns, n, 0, cdb, data).await
}

/// WRITE(10) of one block at `lba`, with FUA if asked.
fn write10(lba: u32, fua: bool) -> [u8; 10] {
    let mut c = [0x2a, if fua { 0x08 } else { 0 }, 0, 0, 0, 0, 0, 0, 1, 0];
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c
}

fn block(lba: u32, generation: u8) -> Vec<u8> {
    let mut b = vec![generation; 512];
    b[..4].copy_from_slice(&lba.to_be_bytes());
    b
}

fn holds(image: &[u8], lba: u32, generation: u8) -> bool {
    image[lba as usize * 512..(lba as usize + 1) * 512] == block(lba, generation)[..]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_through_loses_no_acknowledged_write_on_a_power_cut() {
    let (luns, lu, disk) = unit(WriteCache::WriteThrough, 3);
    assert_eq!(lu.write_cache(), (WriteCache::WriteThrough, false));
    let luns = Arc::new(luns);
    let mut tasks = Vec::new();
    for k in 0..16u8 {
        let luns = luns.clone();
        tasks.push(tokio::spawn(async move {
            let n = ready(&luns, k).await;
            let mut acked = Vec::new();
            for lba in (u32::from(k)..256).step_by(16) {
                if run(&luns, &n, &write10(lba, false), &block(lba, 7)).await.is_ok() {
                    acked.push(lba);
                }
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    // The power goes the moment the last write is acknowledged.
    let image = disk.power_cut();
    assert_eq!(acked.len(), 256);
    let lost: Vec<u32> = acked.iter().copied().filter(|&lba| !holds(&image, lba, 7)).collect();
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
    println!("256 write-through writes from 16 initiators, {} flushes", disk.flushes());
    assert!(disk.flushes() < 256, "group commit shares flushes");
}

#[tokio::test]
async fn write_back_keeps_what_a_flush_or_fua_covered_and_nothing_else() {
    let (luns, lu, disk) = unit(WriteCache::WriteBack, 0);
    assert_eq!(lu.write_cache(), (WriteCache::WriteBack, true));
    let n = ready(&luns, 1).await;
    for lba in 0..8 {
        run(&luns, &n, &write10(lba, false), &block(lba, 1)).await.unwrap();
    }
    // SYNCHRONIZE CACHE(10): everything before it is durable.
    run(&luns, &n, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]).await.unwrap();
    for lba in 8..16 {
        run(&luns, &n, &write10(lba, false), &block(lba, 2)).await.unwrap();
    }
    run(&luns, &n, &write10(16, true), &block(16, 3)).await.unwrap();
    for lba in 17..24 {
        run(&luns, &n, &write10(lba, false), &block(lba, 4)).await.unwrap();
    }
    let image = disk.power_cut();
    assert!((0..8).all(|lba| holds(&image, lba, 1)), "covered by SYNCHRONIZE CACHE");
    assert!(holds(&image, 16, 3), "FUA");
    assert!((17..24).all(|lba| !holds(&image, lba, 4)), "never flushed: gone, as write-back says");
}

#[tokio::test]
async fn a_failed_flush_is_a_write_error_not_good() {
    let (luns, _lu, disk) = unit(WriteCache::WriteThrough, 0);
    let n = ready(&luns, 1).await;
    disk.fail_next_flush();
    assert_eq!(run(&luns, &n, &write10(0, false), &block(0, 1)).await, Err(SenseReason::WriteError));
    run(&luns, &n, &write10(1, false), &block(1, 1)).await.unwrap();
}

#[tokio::test]
async fn a_live_policy_change_tells_every_initiator() {
    let (luns, lu, _disk) = unit(WriteCache::WriteThrough, 0);
    let (a, b) = (ready(&luns, 1).await, ready(&luns, 2).await);
    assert!(lu.set_write_cache(WriteCache::WriteBack).await, "WCE 0 -> 1");
    for n in [&a, &b] {
        assert_eq!(
            run(&luns, n, &[0x00], &[]).await,
            Err(SenseReason::UnitAttention(UnitAttention::ModeParametersChanged))
        );
    }
    // From write-back to the initiator's choice WCE stays 1: nothing to tell.
    assert!(!lu.set_write_cache(WriteCache::Initiator).await);
    assert_eq!(run(&luns, &a, &[0x00], &[]).await, Ok(Reply::good()));
}

/// MODE SELECT(6) of the Caching page with WCE set as given.
async fn select_wce(luns: &LunMap, n: &Nexus, wce: bool) -> Result<Reply, SenseReason> {
    let page = run(luns, n, &[0x1a, 0x08, 0x08, 0, 255, 0], &[]).await.unwrap().data;
    let mut pl = vec![0u8, 0, 0, 0];
    pl.extend_from_slice(&page[4..]);
    pl[4 + 2] = (pl[4 + 2] & !0x04) | if wce { 0x04 } else { 0 };
    run(luns, n, &[0x15, 0x10, 0, 0, pl.len() as u8, 0], &pl).await
}

#[tokio::test]
async fn the_wce_an_initiator_chooses_is_kept_across_a_restart() {
    let dir = std::env::temp_dir().join(format!("portico-wce-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vol.img.reservations.toml");
    let open = |policy| {
        let disk = Arc::new(PowerCutBackend::new(BLOCKS * 512));
        let (luns, lu) = unit_on(disk, 512);
        lu.open_state(Some(path.clone()), policy).unwrap();
        (luns, lu)
    };
    let (luns, lu) = open(WriteCache::Initiator);
    let n = ready(&luns, 1).await;
    assert_eq!(lu.write_cache(), (WriteCache::Initiator, true));
    select_wce(&luns, &n, false).await.unwrap();
    assert!(path.exists(), "the choice is saved before GOOD");
    drop((luns, lu));
    let (_luns, lu) = open(WriteCache::Initiator);
    assert_eq!(lu.write_cache(), (WriteCache::Initiator, false), "still off after the restart");
    // Under write-through the saved choice does not apply, and cannot be made.
    let (luns, lu) = open(WriteCache::WriteThrough);
    assert_eq!(lu.write_cache(), (WriteCache::WriteThrough, false));
    let n = ready(&luns, 1).await;
    assert!(matches!(select_wce(&luns, &n, true).await, Err(SenseReason::InvalidFieldInParameterList(_))));
    std::fs::remove_dir_all(&dir).unwrap();
}
