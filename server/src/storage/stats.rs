//! Recent activity per volume for the dashboard's charts: the engine's
//! counters sampled every few seconds, kept for the last minutes in memory.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use portico_app::model::storage::{VolumeActivity, VolumeSample};
use target_engine::engine::Engine;
use target_engine::scsi::LuCounters;

pub const INTERVAL: Duration = Duration::from_secs(5);
/// Samples kept: ten minutes.
const KEEP: usize = 120;

#[derive(Default)]
struct Series {
    last: Option<LuCounters>,
    samples: VecDeque<VolumeSample>,
}

#[derive(Default)]
pub struct ActivityLog {
    series: Mutex<BTreeMap<String, Series>>,
}

fn rate(now: u64, before: u64, seconds: f64) -> f64 {
    now.saturating_sub(before) as f64 / seconds
}

impl ActivityLog {
    /// Records one reading of every volume's counters.
    pub fn record(&self, readings: Vec<(String, LuCounters)>, seconds: f64, time: String) {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        series.retain(|name, _| readings.iter().any(|(n, _)| n == name));
        for (name, c) in readings {
            let s = series.entry(name).or_default();
            if let Some(last) = s.last {
                s.samples.push_back(VolumeSample {
                    time: time.clone(),
                    iops: rate(c.commands, last.commands, seconds),
                    read_mbps: rate(c.bytes_read, last.bytes_read, seconds) / 1e6,
                    write_mbps: rate(c.bytes_written, last.bytes_written, seconds) / 1e6,
                });
                while s.samples.len() > KEEP {
                    s.samples.pop_front();
                }
            }
            s.last = Some(c);
        }
    }

    pub fn activity(&self, volume: &str) -> VolumeActivity {
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let s = series.get(volume);
        let last = s.and_then(|s| s.last).unwrap_or_default();
        VolumeActivity {
            volume: volume.to_string(),
            interval_seconds: INTERVAL.as_secs() as u32,
            samples: s.map(|s| s.samples.iter().cloned().collect()).unwrap_or_default(),
            commands: last.commands,
            bytes_read: last.bytes_read,
            bytes_written: last.bytes_written,
            errors: last.errors,
        }
    }
}

/// Samples the engine until the log is dropped.
pub fn spawn_sampler(engine: Engine, log: std::sync::Weak<ActivityLog>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last = tokio::time::Instant::now();
        loop {
            tick.tick().await;
            let Some(log) = log.upgrade() else { break };
            let now = tokio::time::Instant::now();
            let seconds = now.duration_since(last).as_secs_f64().max(0.001);
            last = now;
            let readings = engine.volume_stats().await.into_iter().map(|v| (v.volume, v.counters)).collect();
            log.record(readings, seconds, crate::db::now());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(commands: u64, read: u64, written: u64) -> LuCounters {
        LuCounters { commands, bytes_read: read, bytes_written: written, ..LuCounters::default() }
    }

    #[test]
    fn rates_come_from_consecutive_readings() {
        let log = ActivityLog::default();
        log.record(vec![("v".into(), counters(100, 0, 0))], 5.0, "t0".into());
        assert!(log.activity("v").samples.is_empty(), "one reading is no rate yet");
        log.record(vec![("v".into(), counters(600, 10_000_000, 5_000_000))], 5.0, "t1".into());
        let a = log.activity("v");
        assert_eq!(a.samples.len(), 1);
        assert_eq!(a.samples[0].iops, 100.0);
        assert_eq!(a.samples[0].read_mbps, 2.0);
        assert_eq!(a.samples[0].write_mbps, 1.0);
        assert_eq!(a.commands, 600);
    }

    #[test]
    fn history_is_bounded_and_deleted_volumes_are_forgotten() {
        let log = ActivityLog::default();
        for i in 0..(KEEP as u64 + 10) {
            log.record(vec![("v".into(), counters(i, 0, 0))], 1.0, format!("t{i}"));
        }
        assert_eq!(log.activity("v").samples.len(), KEEP);
        log.record(vec![], 1.0, "later".into());
        assert!(log.activity("v").samples.is_empty());
    }
}
