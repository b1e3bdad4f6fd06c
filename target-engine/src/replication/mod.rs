//! Synchronous replication of volumes between nodes (CLUSTER.md §2): every
//! acknowledged write is on every in-sync replica, replicas accept only the
//! primary of the placement they have applied (epoch fencing), and a replica
//! that comes back gets only what it missed.
//!
//! [`core`] holds the state machines, with no I/O inside.

pub mod core;
pub mod frame;
