//! Who sends a request, as plain data: the identity the HTTP front established (an OAuth
//! token's subject, claims and scopes, or an API key's name and labels), where the request
//! came from, and the request headers the rules may read. The HTTP front makes it; the policy
//! layer reads it through [`crate::gateway::backend::Client::caller`]; nothing else looks inside.
//!
//! Owns: the caller's shape. Must not touch: how a caller is authenticated or judged.

use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Caller {
    /// The token's `sub` (else its client id), `api-key:<name>` for a named key, "" for nobody.
    pub subject: String,
    /// The verified token's claims (`Null` without a token).
    pub claims: Arc<Value>,
    /// The API key the request presented, if any.
    pub key: Option<Arc<KeyInfo>>,
    pub scopes: Vec<String>,
    /// The client's address (for a request another replica forwarded: the address it saw).
    pub address: Option<IpAddr>,
    /// The request headers the rules may read (`ruleHeaders`), names in lower case.
    pub headers: Vec<(String, String)>,
    /// The group this request reached a member server through (set by the group on its way to
    /// the member, so the member's own rules know they are not the first to judge).
    pub via: Option<String>,
}

/// A named API key, as the rules see it (never the key itself).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

impl Caller {
    /// This caller on its way through group `group` to one of its members.
    pub fn through(&self, group: &str) -> Caller {
        Caller {
            via: Some(group.to_string()),
            ..self.clone()
        }
    }
}
