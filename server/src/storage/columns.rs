//! Columns that hold JSON (portals, addresses, traffic types, settings) are
//! read strictly: a value that does not parse is damage to report, never a
//! default to carry on with (the defaults of privileges, say, would open
//! what an administrator closed).

use portico_app::error::ApiError;
use serde::de::DeserializeOwned;

/// A stored value that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("the stored {what} cannot be read: {why}")]
pub struct Damaged {
    pub what: String,
    pub why: String,
}

/// Parses the JSON column that holds `what`.
pub fn json<T: DeserializeOwned>(what: impl Into<String>, text: &str) -> Result<T, Damaged> {
    serde_json::from_str(text).map_err(|e| Damaged { what: what.into(), why: e.to_string() })
}

impl From<Damaged> for ApiError {
    fn from(d: Damaged) -> Self {
        tracing::error!(error = %d, "damaged data in the database");
        ApiError::new(500, format!("{d}; the database needs repair."))
    }
}

impl From<Damaged> for sqlx::Error {
    fn from(d: Damaged) -> Self {
        sqlx::Error::Decode(Box::new(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damage_is_reported_not_defaulted() {
        let ok: Vec<String> = json("portals of t", r#"["127.0.0.1:3260"]"#).unwrap();
        assert_eq!(ok, ["127.0.0.1:3260"]);
        let e = json::<Vec<String>>("portals of t", "[\"127.0.0.1:3260\"").unwrap_err();
        assert!(e.to_string().starts_with("the stored portals of t cannot be read"), "{e}");
        let api: ApiError = e.into();
        assert_eq!(api.status, 500);
        let privileges = crate::storage::privileges::parse("{\"target_cold_reset\": \"maybe\"}");
        assert!(privileges.is_err(), "a privilege that cannot be read is not the default");
    }
}
