//! OAuth on the wire (MCP authorization, RFC 9728 and RFC 6750): the protected-resource
//! metadata documents, the bearer check on every MCP endpoint with its `WWW-Authenticate`
//! challenges (401 with `resource_metadata`, `invalid_token` when a token was sent; 403
//! `insufficient_scope` naming the scopes needed), API keys beside tokens, and a session bound
//! to the subject that opened it.
//!
//! Owns: the HTTP side of authorization. Must not touch: how tokens are verified.

use std::sync::Arc;

use serde_json::json;
use warp::{
    http::{HeaderMap, HeaderValue, StatusCode},
    reply::Response,
};

use super::{
    headers::header,
    reply::{error_reply, json_reply},
    served::prefix,
    state::{Http, ResourceServer},
};
use crate::{
    gateway::{
        caller::{Caller, KeyInfo},
        oauth::{ALL_SCOPES, Principal, TokenError},
        policy::keys::NamedKey,
        servers::tools,
    },
    mcp::jsonrpc::Kind,
};

/// The well-known path of protected-resource metadata.
pub(super) const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// The subject of requests made with an API key.
const API_KEY_SUBJECT: &str = "api-key";

/// The resource an endpoint belongs to: `/mcp` or `/sse` (its POSTs too), under its server.
pub(super) fn resource_path(server: Option<&str>, endpoint: &str) -> String {
    let kind = match endpoint {
        "/sse" | "/messages" | "/message" => "/sse",
        _ => "/mcp",
    };
    format!("{}{kind}", prefix(server))
}

fn quoted(s: &str) -> String {
    s.replace(['"', '\\'], "")
}

impl Http {
    /// Scopes a token needs for `server`: `--oauth-scope` plus the server's own.
    fn required_scopes(&self, rs: &ResourceServer, server: Option<&str>) -> Vec<String> {
        let mut scopes = rs.verifier.scopes.clone();
        if let Some(served) = self.registry.serving(server) {
            for s in &served.config.scopes {
                if !scopes.contains(s) {
                    scopes.push(s.clone());
                }
            }
        }
        scopes
    }

    /// The caller of an MCP endpoint: `Ok(None)` without OAuth, the principal its token (or API
    /// key) speaks for, or the 401/403 answer.
    pub(super) async fn authorize(
        &self,
        headers: &HeaderMap,
        server: Option<&str>,
        endpoint: &str,
        client: std::net::IpAddr,
    ) -> Result<Option<Principal>, Box<Response>> {
        let presented = header(headers, "x-api-key").or_else(|| {
            header(headers, "authorization").and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
                    .map(str::trim)
            })
        });
        // A named key speaks for itself; the single --api-key for every scope.
        if let Some(p) = presented.filter(|p| !p.is_empty()) {
            match self.guard.named_key(p) {
                Ok(Some(key)) => return Ok(Some(named_key_principal(&key))),
                Err(refusal) => return Err(Box::new(self.refuse(refusal, client))),
                Ok(None) if self.oauth.is_none() && self.guard.key_matches(p) => {
                    return Ok(Some(api_key_principal()));
                }
                Ok(None) => {}
            }
        }
        let Some(rs) = &self.oauth else {
            return Ok(None);
        };
        let path = resource_path(server, endpoint);
        let metadata = format!("{}{METADATA_PATH}{path}", rs.base);
        let required = self.required_scopes(rs, server);
        let scope_hint = if required.is_empty() {
            String::new()
        } else {
            format!(", scope=\"{}\"", quoted(&required.join(" ")))
        };
        let challenge = |status: StatusCode, error: Option<(&str, &str)>, message: &str| {
            let mut value = format!("Bearer resource_metadata=\"{metadata}\"{scope_hint}");
            if let Some((code, description)) = error {
                value.push_str(&format!(
                    ", error=\"{code}\", error_description=\"{}\"",
                    quoted(description)
                ));
            }
            let mut r = error_reply(status, message);
            if let Ok(v) = HeaderValue::from_str(&value) {
                r.headers_mut().insert("www-authenticate", v);
            }
            Box::new(r)
        };
        if let Some(key) = header(headers, "x-api-key")
            && self.guard.key_matches(key)
        {
            return Ok(Some(api_key_principal()));
        }
        let token = header(headers, "authorization").and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .map(str::trim)
        });
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            self.metrics.reject("oauth_missing");
            return Err(challenge(
                StatusCode::UNAUTHORIZED,
                None,
                "authorization required: send an OAuth access token (Authorization: Bearer); see the resource_metadata in WWW-Authenticate",
            ));
        };
        if self.guard.key_matches(token) {
            return Ok(Some(api_key_principal()));
        }
        let audiences = if rs.verifier.audiences.is_empty() {
            // Any endpoint of the same server: its two transports are one resource.
            let server_url = format!("{}{}", rs.base, prefix(server));
            vec![
                format!("{server_url}/mcp"),
                format!("{server_url}/sse"),
                format!("{server_url}/"),
                server_url,
            ]
        } else {
            rs.verifier.audiences.clone()
        };
        let principal = match rs.verifier.verify(token, &audiences).await {
            Ok(p) => p,
            Err(TokenError::Unavailable(reason)) => {
                // The token may well be good: the client keeps it and tries again.
                self.metrics.reject("oauth_issuer_unavailable");
                tracing::warn!(%reason, "cannot check an access token: its issuer is unavailable");
                let mut r = error_reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the access token cannot be checked now (the authorization server is unavailable); retry shortly",
                );
                r.headers_mut()
                    .insert("retry-after", HeaderValue::from(5u32));
                return Err(Box::new(r));
            }
            Err(TokenError::Invalid(reason)) => {
                self.metrics.reject("oauth_invalid_token");
                tracing::info!(%reason, "access token refused");
                return Err(challenge(
                    StatusCode::UNAUTHORIZED,
                    Some(("invalid_token", &reason)),
                    &format!("invalid access token: {reason}"),
                ));
            }
        };
        let missing = principal.missing(&required);
        if !missing.is_empty() {
            return Err(Box::new(self.insufficient(&metadata, &required, &missing)));
        }
        Ok(Some(principal))
    }

    /// `GET /.well-known/oauth-protected-resource[/path]` (RFC 9728): which authorization
    /// servers protect the resource at `path` (the root document describes `/mcp`).
    pub(super) fn protected_resource(&self, suffix: &str) -> Response {
        let Some(rs) = &self.oauth else {
            return error_reply(StatusCode::NOT_FOUND, "OAuth is not enabled here");
        };
        let path = if suffix.is_empty() || suffix == "/" {
            "/mcp".to_string()
        } else {
            let (server, endpoint) = super::served::split_server(suffix);
            if !matches!(endpoint, "/mcp" | "/sse")
                || server.is_some_and(|n| self.registry.serving(Some(n)).is_none())
            {
                return error_reply(StatusCode::NOT_FOUND, "no such protected resource");
            }
            resource_path(server, endpoint)
        };
        let (server, _) = super::served::split_server(&path);
        let scopes = self.required_scopes(rs, server);
        json_reply(
            StatusCode::OK,
            json!({
                "resource": format!("{}{path}", rs.base),
                "authorization_servers": rs.verifier.issuers(),
                "scopes_supported": scopes,
                "bearer_methods_supported": ["header"],
                "resource_name": "aareguru-mcp gateway",
            }),
        )
    }
}

impl Http {
    /// 403 `insufficient_scope`: the scopes to ask for (all of them), and which were missing.
    fn insufficient(&self, metadata: &str, required: &[String], missing: &[&str]) -> Response {
        self.metrics.reject("oauth_insufficient_scope");
        let message = format!("the token lacks the scope(s) {}", missing.join(" "));
        let value = format!(
            "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{metadata}\", error_description=\"{}\"",
            quoted(&required.join(" ")),
            quoted(&message)
        );
        let mut r = error_reply(StatusCode::FORBIDDEN, &message);
        if let Ok(v) = HeaderValue::from_str(&value) {
            r.headers_mut().insert("www-authenticate", v);
        }
        r
    }

    /// Scopes per tool (a servers file's `toolScopes`): a `tools/call` of a tool whose scopes
    /// the caller lacks is refused with 403 before it reaches the server.
    pub(super) fn check_tool_scopes(
        &self,
        server: Option<&str>,
        endpoint: &str,
        who: Option<&Principal>,
        messages: &[(bytes::Bytes, Kind)],
    ) -> Result<(), Box<Response>> {
        let (Some(rs), Some(who)) = (&self.oauth, who) else {
            return Ok(());
        };
        let Some(served) = self.registry.serving(server) else {
            return Ok(());
        };
        if served.config.tool_scopes.is_empty() {
            return Ok(());
        }
        for (line, kind) in messages {
            if !matches!(kind, Kind::Request { method, .. } if method == "tools/call") {
                continue;
            }
            let Some(name) = serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .and_then(|v| {
                    let params = &v["params"];
                    // Tool search's call tool calls the tool it names.
                    let params = match params["name"].as_str() {
                        Some(crate::gateway::servers::search::CALL)
                            if served.config.tool_search.is_some() =>
                        {
                            &params["arguments"]
                        }
                        _ => params,
                    };
                    params["name"].as_str().map(str::to_string)
                })
            else {
                continue;
            };
            let mut required = self.required_scopes(rs, server);
            for (glob, scopes) in &served.config.tool_scopes {
                if tools::glob(glob, &name) {
                    required.extend(
                        scopes
                            .iter()
                            .filter(|s| !required.contains(s))
                            .cloned()
                            .collect::<Vec<_>>(),
                    );
                }
            }
            let missing = who.missing(&required);
            if !missing.is_empty() {
                let metadata = format!(
                    "{}{METADATA_PATH}{}",
                    rs.base,
                    resource_path(server, endpoint)
                );
                tracing::info!(tool = %name, subject = %who.subject, "a tool call lacks its scopes");
                return Err(Box::new(self.insufficient(&metadata, &required, &missing)));
            }
        }
        Ok(())
    }

    /// A session is used by the subject that opened it only (403 for anyone else's token).
    pub(super) fn check_owner(
        &self,
        bearer: super::replicas::Bearer,
        server: Option<&str>,
        query: &str,
        headers: &HeaderMap,
        who: &Principal,
    ) -> Result<(), Box<Response>> {
        let raw = match bearer {
            super::replicas::Bearer::SsePost => super::headers::session_param(query),
            _ => header(headers, "mcp-session-id").map(|s| s.trim().to_string()),
        };
        let Some(id) = raw.and_then(|r| uuid::Uuid::parse_str(&r).ok()) else {
            return Ok(());
        };
        let Some((_, session)) = self.registry.holding(server, &id) else {
            return Ok(());
        };
        match session.owner() {
            Some(owner) if owner != who.subject => {
                self.metrics.reject("oauth_other_subject");
                tracing::warn!(session = %session.id_str, owner, subject = %who.subject, "a token of another subject was refused on a session");
                Err(Box::new(error_reply(
                    StatusCode::FORBIDDEN,
                    "this session belongs to another subject",
                )))
            }
            _ => Ok(()),
        }
    }
}

fn api_key_principal() -> Principal {
    Principal {
        subject: API_KEY_SUBJECT.into(),
        scopes: vec![ALL_SCOPES.into()],
        claims: Default::default(),
        key: None,
    }
}

/// How `principal` was let in, as the attributes of its authorization step (the key's name,
/// never the key; no token content).
pub(super) fn described(principal: &Principal) -> Vec<(&'static str, String)> {
    let method = match &principal.key {
        Some(key) => {
            return vec![
                ("gateway.auth.method", "named_key".into()),
                ("gateway.auth.key", key.name.clone()),
            ];
        }
        None if principal.subject == API_KEY_SUBJECT => "api_key",
        None => "oauth",
    };
    vec![("gateway.auth.method", method.into())]
}

/// The principal a named API key speaks for: `api-key:<name>`, with the key's scopes.
fn named_key_principal(key: &NamedKey) -> Principal {
    Principal {
        subject: format!("{API_KEY_SUBJECT}:{}", key.info.name),
        scopes: key.scopes.clone(),
        claims: Default::default(),
        key: Some(key.info.clone()),
    }
}

impl Http {
    /// Who sends this request, for the rules: the principal's identity, the client's address
    /// (the one a peer saw, for a request another replica forwarded) and the headers the rules
    /// may read.
    pub(super) fn caller(
        &self,
        who: Option<&Principal>,
        headers: &HeaderMap,
        client: std::net::IpAddr,
    ) -> Caller {
        let address = if headers.contains_key(super::forward::PEER_HEADER) {
            header(headers, "x-forwarded-for")
                .and_then(|v| v.split(',').next())
                .and_then(|a| a.trim().parse().ok())
                .unwrap_or(client)
        } else {
            client
        };
        let wanted = self.registry.book.current();
        let picked = wanted
            .headers
            .iter()
            .filter_map(|name| header(headers, name).map(|v| (name.clone(), v.to_string())))
            .collect();
        let key = who.and_then(|p| match &p.key {
            Some(k) => Some(k.clone()),
            None if p.subject == API_KEY_SUBJECT => Some(Arc::new(KeyInfo {
                name: API_KEY_SUBJECT.into(),
                labels: Default::default(),
            })),
            None => None,
        });
        Caller {
            subject: who.map(|p| p.subject.clone()).unwrap_or_default(),
            claims: who.map(|p| p.claims.clone()).unwrap_or_default(),
            key,
            scopes: who.map(|p| p.scopes.clone()).unwrap_or_default(),
            address: Some(address),
            headers: picked,
            via: None,
        }
    }
}
