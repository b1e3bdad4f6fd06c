//! The path groups of a multipathing host under `group_by_prio` (Linux
//! dm-multipath): every path has a priority (from the ALUA prioritizer,
//! [`super::alua::AccessState::priority`]) and is up or failed; commands go
//! to the up paths of the highest priority, the group in use. Every change
//! of the paths in use is kept with its time of day, and every path counts
//! the commands it ended GOOD, so that a fault test can say which paths
//! carried the I/O before, during and after a fault.

use std::time::SystemTime;

/// Changes of the paths in use that are kept (the newest).
const TIMELINE_KEPT: usize = 400;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathState {
    pub up: bool,
    pub priority: u8,
    /// Commands this path ended GOOD, and when the last did.
    pub good: u64,
    pub last_good: Option<SystemTime>,
}

/// A change of the paths in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub at: SystemTime,
    /// The paths in use from then on (indices), none if empty.
    pub paths: Vec<usize>,
    /// Their priority then.
    pub priority: u8,
}

#[derive(Debug)]
pub struct PathGroups {
    pub states: Vec<PathState>,
    /// When the paths in use changed, and to which.
    timeline: Vec<Change>,
    /// Changes no longer kept in `timeline`.
    forgotten: usize,
}

impl PathGroups {
    /// `paths` paths, all failed until checked.
    pub fn new(paths: usize) -> PathGroups {
        PathGroups { states: vec![PathState::default(); paths], timeline: Vec::new(), forgotten: 0 }
    }

    /// The up paths of the highest priority, in index order.
    pub fn in_use(&self) -> Vec<usize> {
        let Some(best) = self.states.iter().filter(|s| s.up).map(|s| s.priority).max() else { return Vec::new() };
        (0..self.states.len()).filter(|&i| self.states[i].up && self.states[i].priority == best).collect()
    }

    /// What a checker found of path `p`.
    pub fn checked(&mut self, p: usize, up: bool, priority: u8) {
        self.states[p].up = up;
        self.states[p].priority = priority;
        self.note();
    }

    /// What a checker found of every path (up, priority), in path order.
    pub fn checked_all(&mut self, found: &[(bool, u8)]) {
        for (state, &(up, priority)) in self.states.iter_mut().zip(found) {
            state.up = up;
            state.priority = priority;
        }
        self.note();
    }

    /// Path `p` failed a command.
    pub fn failed(&mut self, p: usize) {
        self.states[p].up = false;
        self.note();
    }

    /// Path `p` ended a command GOOD.
    pub fn good(&mut self, p: usize) {
        self.states[p].good += 1;
        self.states[p].last_good = Some(SystemTime::now());
    }

    /// Keeps the time if the paths in use or their priority changed (the
    /// first call always).
    fn note(&mut self) {
        let now = self.in_use();
        let priority = now.first().map_or(0, |&p| self.states[p].priority);
        if self.timeline.last().is_some_and(|last| last.paths == now && last.priority == priority) {
            return;
        }
        if self.timeline.len() == TIMELINE_KEPT {
            self.timeline.remove(0);
            self.forgotten += 1;
        }
        self.timeline.push(Change { at: SystemTime::now(), paths: now, priority });
    }

    /// How many times the paths in use changed.
    pub fn changes(&self) -> usize {
        (self.timeline.len() + self.forgotten).saturating_sub(1)
    }

    /// The changes kept, oldest first, and how many older ones were not.
    pub fn timeline(&self) -> (&[Change], usize) {
        (&self.timeline, self.forgotten)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_group_is_used_and_a_lower_one_only_when_it_has_no_path_up() {
        let mut g = PathGroups::new(4);
        assert!(g.in_use().is_empty(), "nothing is up before a check");
        // Paths 0 and 1 active/optimized (50), 2 and 3 standby (1).
        g.checked_all(&[(true, 50), (true, 50), (true, 1), (true, 1)]);
        assert_eq!(g.in_use(), vec![0, 1]);
        g.failed(0);
        assert_eq!(g.in_use(), vec![1], "one switch lost: the other path of the same group");
        g.failed(1);
        assert_eq!(g.in_use(), vec![2, 3], "the whole group lost: the next one");
        g.failed(2);
        g.failed(3);
        assert!(g.in_use().is_empty());
        // After a failover the checker finds 2 and 3 optimized, 0 and 1 gone.
        g.checked(2, true, 50);
        g.checked(3, true, 50);
        assert_eq!(g.in_use(), vec![2, 3]);
        let (timeline, forgotten) = g.timeline();
        let sets: Vec<Vec<usize>> = timeline.iter().map(|c| c.paths.clone()).collect();
        let priorities: Vec<u8> = timeline.iter().map(|c| c.priority).collect();
        assert_eq!(priorities, vec![50, 50, 1, 1, 0, 50, 50], "each change with the priority it had then");
        assert_eq!(forgotten, 0);
        assert_eq!(
            sets,
            vec![vec![0, 1], vec![1], vec![2, 3], vec![3], vec![], vec![2], vec![2, 3]],
            "every change, and only changes"
        );
        assert_eq!(g.changes(), sets.len() - 1);

        // A failback: the same paths in use, now at their new priority.
        g.checked_all(&[(true, 1), (true, 1), (false, 0), (false, 0)]);
        g.checked_all(&[(true, 50), (true, 50), (true, 1), (true, 1)]);
        let (timeline, _) = g.timeline();
        let last: Vec<(Vec<usize>, u8)> =
            timeline[timeline.len() - 2..].iter().map(|c| (c.paths.clone(), c.priority)).collect();
        assert_eq!(last, vec![(vec![0, 1], 1), (vec![0, 1], 50)], "a change of priority alone is a change too");
    }

    #[test]
    fn a_flapping_path_keeps_only_the_newest_changes() {
        let mut g = PathGroups::new(2);
        g.checked(1, true, 1);
        for _ in 0..TIMELINE_KEPT {
            g.checked(0, true, 50);
            g.failed(0);
        }
        let (timeline, forgotten) = g.timeline();
        assert_eq!(timeline.len(), TIMELINE_KEPT);
        assert_eq!(forgotten, 1 + 2 * TIMELINE_KEPT - TIMELINE_KEPT);
        assert_eq!(g.changes(), 2 * TIMELINE_KEPT);
        assert_eq!(timeline.last().unwrap().paths, vec![1]);
    }
}
