//! Why a token was not accepted: the token's fault, or its issuer's.
//!
//! Owns: the verdicts' kinds. Must not touch: HTTP statuses (the http room maps them).

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenError {
    /// The token is bad (expired, forged, for another server…): the client needs another one.
    #[error("{0}")]
    Invalid(String),
    /// The token could not be checked: its issuer (metadata, keys, introspection) cannot be
    /// reached or answers with an error. Not the token's fault: the client should retry it.
    #[error("{0}")]
    Unavailable(String),
}

impl TokenError {
    pub(super) fn invalid(why: impl Into<String>) -> TokenError {
        TokenError::Invalid(why.into())
    }
}
