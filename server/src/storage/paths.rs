//! The rule that decides each path's ALUA state (PRODUCT.md: one path of a
//! LUN is Active/Optimized, the others Standby, or Active/Non-optimized
//! where the group says so). The dashboard's view and the engine
//! configuration both ask here, so they cannot disagree.

use portico_app::model::storage::{OtherPaths, PathState};
use target_engine::config::AluaState;

/// A LUN's Active/Optimized path is the target on the node that holds its
/// volume's primary replica; the targets on other nodes are in the state
/// their group gives its other paths.
pub fn path_state(target_node: i64, volume_node: i64, other: OtherPaths) -> PathState {
    if target_node == volume_node {
        PathState::ActiveOptimized
    } else {
        match other {
            OtherPaths::Standby => PathState::Standby,
            OtherPaths::ActiveNonOptimized => PathState::ActiveNonOptimized,
        }
    }
}

/// The engine's access state for a path state.
pub fn engine_state(state: PathState) -> AluaState {
    match state {
        PathState::ActiveOptimized => AluaState::ActiveOptimized,
        PathState::ActiveNonOptimized => AluaState::ActiveNonOptimized,
        PathState::Standby => AluaState::Standby,
    }
}

/// A group's other-paths setting as stored (an unknown value, which the
/// column's CHECK forbids, reads as the default, Standby).
pub fn other_paths(column: &str) -> OtherPaths {
    OtherPaths::parse(column).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_volume_node_holds_the_optimized_path() {
        for other in [OtherPaths::Standby, OtherPaths::ActiveNonOptimized] {
            assert_eq!(path_state(1, 1, other), PathState::ActiveOptimized);
            assert_eq!(engine_state(path_state(1, 1, other)), AluaState::ActiveOptimized);
        }
        assert_eq!(path_state(2, 1, OtherPaths::Standby), PathState::Standby);
        assert_eq!(engine_state(path_state(2, 1, OtherPaths::Standby)), AluaState::Standby);
        let other = path_state(2, 1, OtherPaths::ActiveNonOptimized);
        assert_eq!((other, engine_state(other)), (PathState::ActiveNonOptimized, AluaState::ActiveNonOptimized));
        assert_eq!(other_paths("active-non-optimized"), OtherPaths::ActiveNonOptimized);
        assert_eq!(other_paths("standby"), OtherPaths::Standby);
    }
}
