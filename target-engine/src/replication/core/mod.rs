//! The sans-IO core of replication: the primary's and the replicas' state
//! machines and the pieces they share, tested in memory with seeded faults
//! (`sim`). The tokio transport and `ReplicatedBackend` drive them.

pub mod dirty;
pub mod ops;
pub mod order;
pub mod primary;
pub mod replica;
#[cfg(test)]
mod sim;
