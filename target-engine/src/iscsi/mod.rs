//! iSCSI transport (RFC 7143).
//!
//! * [`name`]: iSCSI names and their normalisation (§4.2.7).
//! * [`pdu`]: sans-IO framing (§11.2), digests (§11.2.1).
//! * [`keys`]: text keys and negotiation (§6, §13).
//! * [`chap`]: CHAP (§12.1.3, RFC 1994).
//! * [`login`]: the login state machine (§6.3) and SendTargets (Appendix C).
//! * [`dataout`], [`response`]: Data-Out collection with R2T, Data-In and status.
//! * [`session`], [`writer`], [`conn`]: the full feature phase over a socket.
//! * [`registry`]: the catalog of targets and the table of live sessions.
//! * [`admission`]: what a peer can make the engine hold, and the caps on it.

pub mod name;

#[cfg(feature = "engine")]
pub mod admission;
#[cfg(feature = "engine")]
pub mod chap;
#[cfg(feature = "engine")]
pub mod conn;
#[cfg(feature = "engine")]
pub mod dataout;
#[cfg(feature = "engine")]
pub mod keys;
#[cfg(feature = "engine")]
pub mod login;
#[cfg(feature = "engine")]
pub mod pdu;
#[cfg(feature = "engine")]
pub mod registry;
#[cfg(feature = "engine")]
pub mod response;
#[cfg(feature = "engine")]
pub mod session;
#[cfg(feature = "engine")]
pub mod writer;
