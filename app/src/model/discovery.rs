//! CHAP on discovery sessions: a setting of the node service, not of a
//! target group, because a discovery session (RFC 7143 §4.3) addresses no
//! target. Every portal of every node asks for the same credentials.

use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
use utoipa::ToSchema;

use super::storage::{ChapMode, ChapSetting};

/// Body and answer of `/api/v1/iscsi/discovery`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DiscoverySettings {
    /// Who may open a discovery session: `none` lets any host that reaches a
    /// portal ask for the targets (each answer still lists only the targets
    /// whose ACL lets that initiator in).
    pub chap: ChapSetting,
}

impl DiscoverySettings {
    /// Whether any host may open a discovery session.
    pub fn is_open(&self) -> bool {
        self.chap.mode == ChapMode::None
    }
}
