//! iSCSI transport (RFC 7143).
//!
//! * [`pdu`]: sans-IO framing (§11.2), digests (§11.2.1).
//! * [`keys`]: text keys and negotiation (§6, §13).
//! * [`chap`]: CHAP (§12.1.3, RFC 1994).
//! * [`login`]: the login state machine (§6.3) and SendTargets (Appendix C).
//! * [`dataout`], [`response`]: Data-Out collection with R2T, Data-In and status.
//! * [`session`], [`writer`], [`conn`]: the full feature phase over a socket.
//! * [`registry`]: the catalog of targets and the table of live sessions.

pub mod chap;
pub mod conn;
pub mod dataout;
pub mod keys;
pub mod login;
pub mod pdu;
pub mod registry;
pub mod response;
pub mod session;
pub mod writer;
