//! The one error type of the service layer, the REST API and the server
//! functions: an HTTP status, a readable message, and per-field messages for
//! forms.

use std::collections::BTreeMap;

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
use utoipa::ToSchema;

/// What went wrong, as the API returns it in a JSON body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[error("{message}")]
pub struct ApiError {
    /// The HTTP status code (401, 403, 404, 409, 422, 429, 500 …).
    pub status: u16,
    /// A sentence for a human.
    pub message: String,
    /// Field name → what is wrong with it (forms show these next to the field).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), fields: BTreeMap::new() }
    }

    pub fn unauthenticated() -> Self {
        Self::new(401, "Log in to continue.")
    }

    pub fn forbidden(what: &str) -> Self {
        Self::new(403, format!("Your role does not allow you to {what}."))
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(404, format!("{} does not exist.", what.into()))
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, message)
    }

    pub fn too_many_attempts(message: impl Into<String>) -> Self {
        Self::new(429, message)
    }

    pub fn internal() -> Self {
        Self::new(500, "Something went wrong on the server; the details are in its log.")
    }

    /// A 422 with messages for individual fields.
    pub fn invalid(fields: BTreeMap<String, String>) -> Self {
        ApiError { status: 422, message: "Some fields need attention.".into(), fields }
    }

    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        let mut fields = BTreeMap::new();
        fields.insert(field.to_string(), message.into());
        Self::invalid(fields)
    }

    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    pub fn is_unauthenticated(&self) -> bool {
        self.status == 401
    }
}

impl FromServerFnError for ApiError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            ServerFnErrorErr::Request(_) | ServerFnErrorErr::Response(_) => {
                ApiError::new(503, "The node cannot be reached. Check that it is running.")
            }
            ServerFnErrorErr::Args(msg) | ServerFnErrorErr::Deserialization(msg) => {
                ApiError::new(400, format!("The request was not understood: {msg}"))
            }
            ServerFnErrorErr::MissingArg(msg) => ApiError::new(400, format!("A field is missing: {msg}")),
            _ => ApiError::internal(),
        }
    }
}

/// Collects field errors of one form.
#[derive(Default, Debug)]
pub struct FieldErrors(BTreeMap<String, String>);

impl FieldErrors {
    pub fn check(&mut self, field: &str, result: Result<(), String>) {
        if let Err(msg) = result {
            self.0.entry(field.to_string()).or_insert(msg);
        }
    }

    pub fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(self.0))
        }
    }
}
