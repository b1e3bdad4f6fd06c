//! Synchronous replication of volumes between nodes (CLUSTER.md §2): every
//! acknowledged write is on every in-sync replica, replicas accept only the
//! primary of the placement they have applied (epoch fencing), and a replica
//! that comes back gets only what it missed.
//!
//! [`core`] holds the state machines, with no I/O inside; [`frame`] the
//! stream's codec; [`backend`] the primary's side as a `BlockBackend`,
//! [`link`] its stream to each replica, [`server`] the replicas' side;
//! [`control`] what is asked of the control plane; [`auth`] and [`guard`]
//! who may open a stream.

pub mod auth;
pub mod backend;
pub mod config;
pub mod control;
pub mod core;
pub mod frame;
pub mod guard;
pub mod keyed_tls;
pub mod link;
pub mod server;
pub mod volumes;
