//! The `portico` node: dashboard, REST API, sessions and roles, database,
//! and (from `portico engine`) the iSCSI engine.

pub mod api;
pub mod cli;
pub mod client;
pub mod client_address;
pub mod cluster;
pub mod csrf;
pub mod data_dir;
pub mod db;
pub mod https;
pub mod metrics;
pub mod secrets;
pub mod service;
pub mod state;
pub mod storage;
pub mod throttle;
pub mod web;
