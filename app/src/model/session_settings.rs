//! A target group's session parameters: what its targets offer in login
//! negotiation (RFC 7143 §13.5-13.13, §13.1 digests) and how often they ping
//! an idle initiator (NOP-In, §11.19). A setting left out takes the
//! engine's default; the engine's ranges decide what is valid, so the
//! server validates with them and sends the defaults along with each view.
//! Changes reach new sessions only: a logged-in session keeps what it
//! negotiated.

use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
use utoipa::ToSchema;

/// Which digest a target accepts on headers or data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum DigestPolicy {
    /// No digest.
    None,
    /// CRC32C required: a login that does not agree to it fails.
    Crc32c,
    /// Whichever the initiator offers first.
    Either,
}

impl DigestPolicy {
    pub const ALL: [DigestPolicy; 3] = [DigestPolicy::None, DigestPolicy::Crc32c, DigestPolicy::Either];

    pub fn as_str(self) -> &'static str {
        match self {
            DigestPolicy::None => "none",
            DigestPolicy::Crc32c => "crc32c",
            DigestPolicy::Either => "either",
        }
    }

    pub fn parse(s: &str) -> Option<DigestPolicy> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }

    pub fn label(self) -> &'static str {
        match self {
            DigestPolicy::None => "None",
            DigestPolicy::Crc32c => "CRC32C required",
            DigestPolicy::Either => "None or CRC32C",
        }
    }
}

/// The settings an administrator chose; a setting left out (or null) is
/// the engine's default. Body of `PUT /api/v1/target-groups/{name}/session`,
/// which replaces them all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    /// Largest data segment the target accepts in one PDU, bytes.
    #[serde(default)]
    pub max_recv_data_segment_length: Option<u64>,
    /// Largest burst of solicited or Data-In data, bytes.
    #[serde(default)]
    pub max_burst_length: Option<u64>,
    /// Largest unsolicited data of one write, bytes; at most `max_burst_length`.
    #[serde(default)]
    pub first_burst_length: Option<u64>,
    /// Whether write data may ride in the command PDU.
    #[serde(default)]
    pub immediate_data: Option<bool>,
    /// Whether the initiator must wait for R2T before sending write data.
    #[serde(default)]
    pub initial_r2t: Option<bool>,
    #[serde(default)]
    pub header_digest: Option<DigestPolicy>,
    #[serde(default)]
    pub data_digest: Option<DigestPolicy>,
    /// Idle seconds after which the target pings the initiator.
    #[serde(default)]
    pub nop_in_interval: Option<u64>,
    /// Seconds the initiator has to answer a ping before the connection is dropped.
    #[serde(default)]
    pub nop_in_timeout: Option<u64>,
}

/// Every session parameter with its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct SessionValues {
    pub max_recv_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub immediate_data: bool,
    pub initial_r2t: bool,
    pub header_digest: DigestPolicy,
    pub data_digest: DigestPolicy,
    pub nop_in_interval: u32,
    pub nop_in_timeout: u32,
}

/// A group's session parameters as the API shows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct SessionView {
    /// What the administrator chose (null: the default).
    pub settings: SessionSettings,
    /// What new sessions are offered: the chosen settings, else the defaults.
    pub offered: SessionValues,
    /// The engine's defaults.
    pub defaults: SessionValues,
}
