//! The rule that decides each path's ALUA state (PRODUCT.md: one path of a
//! LUN is Active/Optimized, the others Standby). The dashboard's view and
//! the engine configuration both ask here, so they cannot disagree.

use portico_app::model::storage::PathState;
use target_engine::config::AluaState;

/// A LUN's Active/Optimized path is the target on the node that holds its
/// volume's primary replica; the targets on other nodes are Standby.
pub fn path_state(target_node: i64, volume_node: i64) -> PathState {
    if target_node == volume_node {
        PathState::ActiveOptimized
    } else {
        PathState::Standby
    }
}

/// The engine's access state for a path state.
pub fn engine_state(state: PathState) -> AluaState {
    match state {
        PathState::ActiveOptimized => AluaState::ActiveOptimized,
        PathState::Standby => AluaState::Standby,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_volume_node_holds_the_optimized_path() {
        assert_eq!(path_state(1, 1), PathState::ActiveOptimized);
        assert_eq!(path_state(2, 1), PathState::Standby);
        assert_eq!(engine_state(path_state(2, 1)), AluaState::Standby);
        assert_eq!(engine_state(path_state(1, 1)), AluaState::ActiveOptimized);
    }
}
