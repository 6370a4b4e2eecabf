//! Finding the authorization server of a remote MCP server, as the MCP authorization spec
//! describes: the protected-resource metadata (RFC 9728) named by the 401's `resource_metadata`,
//! else at the well-known URL for the server's path, else at its root; then the authorization
//! server's metadata (RFC 8414, then OpenID discovery, with and without the issuer's path). A
//! server without resource metadata is treated as the 2025-03-26 revision did: its origin is the
//! authorization server, with `/authorize`, `/token` and `/register` when it publishes no
//! metadata either.
//!
//! Owns: discovery. Must not touch: tokens.

use serde_json::Value;

/// What the bridge needs to know of the authorization server.
#[derive(Debug, Clone, Default)]
pub struct Server {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub registration_endpoint: Option<String>,
    pub scopes_supported: Vec<String>,
    pub token_auth_methods: Vec<String>,
    pub cimd: bool,
}

/// The resource and where its tokens come from.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The `resource` parameter to send (RFC 8707).
    pub resource: String,
    /// Scopes the resource metadata lists.
    pub scopes_supported: Vec<String>,
    pub server: Server,
}

/// A `WWW-Authenticate: Bearer` challenge's parameters.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Challenge {
    pub resource_metadata: Option<String>,
    pub scope: Option<String>,
    pub error: Option<String>,
}

pub fn parse_challenge(header: &str) -> Challenge {
    let mut c = Challenge::default();
    let rest = header.trim();
    let rest = rest
        .strip_prefix("Bearer")
        .or_else(|| rest.strip_prefix("bearer"))
        .unwrap_or(rest);
    // key="value" or key=token, comma separated.
    let mut s = rest;
    while let Some(eq) = s.find('=') {
        let key = s[..eq]
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = &s[eq + 1..];
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (&q[..end], &q[(end + 1).min(q.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim(), &after[end..])
        };
        match key.as_str() {
            "resource_metadata" => c.resource_metadata = Some(value.to_string()),
            "scope" => c.scope = Some(value.to_string()),
            "error" => c.error = Some(value.to_string()),
            _ => {}
        }
        s = next;
    }
    c
}

/// `https://h:1/a/b?q` → (`https://h:1`, `/a/b`).
pub fn split(url: &str) -> (String, String) {
    let no_query = url.split(['?', '#']).next().unwrap_or(url);
    let after = no_query.find("://").map_or(0, |i| i + 3);
    match no_query[after..].find('/') {
        Some(i) => (
            no_query[..after + i].to_string(),
            no_query[after + i..].trim_end_matches('/').to_string(),
        ),
        None => (no_query.to_string(), String::new()),
    }
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let r = http
        .get(url)
        .header("accept", "application/json")
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("{url}: HTTP {}", r.status().as_u16()));
    }
    r.json().await.map_err(|e| format!("{url}: {e}"))
}

/// Everything needed to get a token for the MCP server at `server_url`.
pub async fn discover(
    http: &reqwest::Client,
    server_url: &str,
    challenge: &Challenge,
) -> Result<Discovered, String> {
    let (origin, path) = split(server_url);
    let mut candidates = vec![];
    if let Some(u) = &challenge.resource_metadata {
        candidates.push(u.clone());
    }
    if !path.is_empty() {
        candidates.push(format!(
            "{origin}/.well-known/oauth-protected-resource{path}"
        ));
    }
    candidates.push(format!("{origin}/.well-known/oauth-protected-resource"));
    let mut prm = None;
    for url in &candidates {
        if let Ok(doc) = get_json(http, url).await {
            prm = Some(doc);
            break;
        }
    }
    let Some(prm) = prm else {
        // The 2025-03-26 way: the server's origin is its own authorization server.
        let server = authorization_server(http, &origin, true).await?;
        return Ok(Discovered {
            resource: server_url.to_string(),
            scopes_supported: vec![],
            server,
        });
    };
    let resource = prm["resource"].as_str().unwrap_or(server_url).to_string();
    if !resource_allowed(server_url, &resource) {
        return Err(format!(
            "the protected-resource metadata names {resource:?}, which is not {server_url:?}: refused (RFC 9728)"
        ));
    }
    let issuer = prm["authorization_servers"][0]
        .as_str()
        .ok_or("the protected-resource metadata names no authorization server")?;
    let server = authorization_server(http, issuer.trim_end_matches('/'), false).await?;
    Ok(Discovered {
        resource,
        scopes_supported: strings(&prm["scopes_supported"]),
        server,
    })
}

/// Whether `resource` (from the metadata) covers `server_url`: same origin, and a path that
/// is the server's or a parent of it.
fn resource_allowed(server_url: &str, resource: &str) -> bool {
    let (o1, p1) = split(server_url);
    let (o2, p2) = split(resource);
    o1.eq_ignore_ascii_case(&o2) && (p1 == p2 || p2.is_empty() || p1.starts_with(&format!("{p2}/")))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The authorization server `issuer`'s metadata; with `fallback` (2025-03-26), the default
/// endpoints when there is none.
pub(super) async fn authorization_server(
    http: &reqwest::Client,
    issuer: &str,
    fallback: bool,
) -> Result<Server, String> {
    let (origin, path) = split(issuer);
    let mut candidates = vec![format!(
        "{origin}/.well-known/oauth-authorization-server{path}"
    )];
    if !path.is_empty() {
        candidates.push(format!("{origin}/.well-known/openid-configuration{path}"));
        candidates.push(format!("{issuer}/.well-known/openid-configuration"));
    } else {
        candidates.push(format!("{origin}/.well-known/openid-configuration"));
    }
    for url in &candidates {
        if let Ok(doc) = get_json(http, url).await {
            let s = |k: &str| doc[k].as_str().map(str::to_string);
            return Ok(Server {
                issuer: s("issuer").unwrap_or_else(|| issuer.to_string()),
                authorization_endpoint: s("authorization_endpoint")
                    .unwrap_or_else(|| format!("{origin}/authorize")),
                token_endpoint: s("token_endpoint").unwrap_or_else(|| format!("{origin}/token")),
                registration_endpoint: s("registration_endpoint"),
                scopes_supported: strings(&doc["scopes_supported"]),
                token_auth_methods: strings(&doc["token_endpoint_auth_methods_supported"]),
                cimd: doc["client_id_metadata_document_supported"] == true,
            });
        }
    }
    if !fallback {
        return Err(format!("no authorization server metadata for {issuer}"));
    }
    Ok(Server {
        issuer: origin.clone(),
        authorization_endpoint: format!("{origin}/authorize"),
        token_endpoint: format!("{origin}/token"),
        registration_endpoint: Some(format!("{origin}/register")),
        ..Server::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_parsed() {
        let c = parse_challenge(
            r#"Bearer resource_metadata="http://h/.well-known/oauth-protected-resource/mcp", scope="a b", error="insufficient_scope""#,
        );
        assert_eq!(
            c.resource_metadata.as_deref(),
            Some("http://h/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(c.scope.as_deref(), Some("a b"));
        assert_eq!(c.error.as_deref(), Some("insufficient_scope"));
        assert_eq!(parse_challenge("Bearer"), Challenge::default());
        assert_eq!(
            parse_challenge("Bearer error=invalid_token")
                .error
                .as_deref(),
            Some("invalid_token")
        );
    }

    #[test]
    fn resources_must_cover_the_server() {
        assert!(resource_allowed("http://h:1/mcp", "http://h:1/mcp"));
        assert!(resource_allowed("http://h:1/mcp", "http://h:1"));
        assert!(resource_allowed(
            "http://h:1/servers/a/mcp",
            "http://h:1/servers/a"
        ));
        assert!(!resource_allowed("http://h:1/mcp", "http://evil:1/mcp"));
        assert!(!resource_allowed("http://h:1/mcp", "http://h:1/other"));
        assert_eq!(
            split("http://h:1/a/b/?x"),
            ("http://h:1".into(), "/a/b".into())
        );
    }
}
