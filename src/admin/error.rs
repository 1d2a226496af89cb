//! Errors of the admin HTTP server: [`AdminError`] when it cannot start, [`ApiError`] for a
//! refused API request (its status code and the JSON body `{"error": .., "parameter": ..}`).
//! Built by `query` (bad query parameters) and `handlers` (unknown device).

use serde::Serialize;
use thiserror::Error;

/// Why the admin server could not start.
#[derive(Debug, Error)]
pub enum AdminError {
    #[error("cannot listen for admin HTTP on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serve admin HTTP on the bound listener: {0}")]
    Serve(#[source] std::io::Error),
}

/// A refused API request, answered as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize)]
#[error("{error}")]
pub(crate) struct ApiError {
    /// HTTP status code (400, 404 or 503).
    #[serde(skip)]
    pub status: u16,
    /// What went wrong, for a person.
    pub error: String,
    /// The query parameter (or path segment) at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
}

impl ApiError {
    /// 400, blaming `parameter`.
    pub(crate) fn bad_parameter(
        parameter: impl Into<String>,
        error: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status: 400,
            error: error.into(),
            parameter: Some(parameter.into()),
        }
    }

    /// 503: the gateway cannot take this request now (the client may try again).
    pub(crate) fn unavailable(error: impl Into<String>) -> ApiError {
        ApiError {
            status: 503,
            error: error.into(),
            parameter: None,
        }
    }

    /// 400 for a request body that is not what the route takes.
    pub(crate) fn bad_request(error: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            error: error.into(),
            parameter: None,
        }
    }

    /// 403: this gateway does not allow the request at all (no admin token for an action).
    pub(crate) fn forbidden(error: impl Into<String>) -> ApiError {
        ApiError {
            status: 403,
            error: error.into(),
            parameter: None,
        }
    }

    /// 404 for something that does not exist.
    pub(crate) fn not_found(error: impl Into<String>) -> ApiError {
        ApiError {
            status: 404,
            error: error.into(),
            parameter: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_the_parameter_only_when_there_is_one() {
        let bad = ApiError::bad_parameter("count", "too big");
        assert_eq!(
            serde_json::to_value(&bad).unwrap(),
            serde_json::json!({"error": "too big", "parameter": "count"})
        );
        let missing = ApiError::not_found("no such device");
        assert_eq!(missing.status, 404);
        assert_eq!(
            serde_json::to_value(&missing).unwrap(),
            serde_json::json!({"error": "no such device"})
        );
    }
}
