//! Which server a request is for: `/servers/<name>/…` names one of the registry's, the plain
//! paths the default one. Resolving it, and what a new session of it gets from the request
//! (`envFromHeaders`).
//!
//! Owns: the HTTP side of the registry. Must not touch: how servers are built.

use std::sync::Arc;

use warp::{
    http::{HeaderMap, HeaderValue, StatusCode},
    reply::Response,
};

use super::{reply::error_reply, state::Http};
use crate::{
    config::HeaderEnv,
    gateway::{federation, servers::Served},
};

/// `/servers/<name>/rest` → (`Some(name)`, `/rest`); any other path → (`None`, path).
pub(super) fn split_server(path: &str) -> (Option<&str>, &str) {
    let Some(rest) = path.strip_prefix("/servers/") else {
        return (None, path);
    };
    match rest.split_once('/') {
        Some((name, tail)) if !name.is_empty() => {
            (Some(name), &path[path.len() - tail.len() - 1..])
        }
        _ => (None, path),
    }
}

/// Where a server's endpoints are, below the gateway's public prefix.
pub(super) fn prefix(server: Option<&str>) -> String {
    server.map_or_else(String::new, |n| format!("/servers/{n}"))
}

impl Http {
    /// The server taking new sessions for this request: 404 for a name not served, 503 for a
    /// server that could not be started.
    pub(super) fn serving(&self, server: Option<&str>) -> Result<Arc<Served>, Box<Response>> {
        let Some(served) = self.registry.serving(server) else {
            self.metrics.reject("unknown_server");
            let names = self.registry.names().join(", ");
            return Err(Box::new(error_reply(
                StatusCode::NOT_FOUND,
                &format!(
                    "no server named {:?} here; served: {}",
                    server.unwrap_or(""),
                    if names.is_empty() { "(none)" } else { &names }
                ),
            )));
        };
        if let Some(e) = &served.failed {
            self.metrics.reject("server_failed");
            let mut r = error_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("server {:?} is not available: {e}", served.name()),
            );
            r.headers_mut()
                .insert("retry-after", HeaderValue::from(30u32));
            return Err(Box::new(r));
        }
        Ok(served)
    }

    /// The environment a new session's child gets from this request's headers; 400 when a
    /// required one is missing. The values are never logged. A group's session carries each
    /// member's own (see [`federation::scoped`]); a member whose required header is missing is
    /// left out of that session rather than refusing it.
    pub(super) fn session_env(
        &self,
        served: &Served,
        headers: &HeaderMap,
    ) -> Result<Vec<(String, String)>, Box<Response>> {
        if let Some(group) = &served.members {
            let mut env = vec![];
            for member in group.served.lock().iter() {
                if member.config.env_from_headers.is_empty() {
                    continue;
                }
                let name = member.name();
                match header_env(&member.config.env_from_headers, headers) {
                    Ok(own) => {
                        env.push((federation::scoped(name, ""), String::new()));
                        env.extend(
                            own.into_iter()
                                .map(|(k, v)| (federation::scoped(name, &k), v)),
                        );
                    }
                    Err(header) => env.push((
                        federation::scoped(name, ""),
                        format!("it needs the {header} header for each session"),
                    )),
                }
            }
            return Ok(env);
        }
        header_env(&served.config.env_from_headers, headers).map_err(|header| {
            self.metrics.reject("missing_header");
            Box::new(error_reply(
                StatusCode::BAD_REQUEST,
                &format!(
                    "server {:?} needs the {header} header for each session",
                    served.name(),
                ),
            ))
        })
    }
}

/// The variables `specs` take from `headers`; `Err(header)` when a required one is missing.
fn header_env(specs: &[HeaderEnv], headers: &HeaderMap) -> Result<Vec<(String, String)>, String> {
    let mut env = vec![];
    for h in specs {
        match headers.get(h.header.as_str()).and_then(|v| v.to_str().ok()) {
            Some(v) => env.push((h.env.clone(), v.to_string())),
            None if h.required => return Err(h.header.clone()),
            None => {}
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_paths() {
        assert_eq!(split_server("/servers/time/mcp"), (Some("time"), "/mcp"));
        assert_eq!(
            split_server("/servers/a.b/messages"),
            (Some("a.b"), "/messages")
        );
        assert_eq!(split_server("/mcp"), (None, "/mcp"));
        assert_eq!(split_server("/servers/"), (None, "/servers/"));
        assert_eq!(split_server("/servers//mcp"), (None, "/servers//mcp"));
        assert_eq!(split_server("/servers/x"), (None, "/servers/x"));
        assert_eq!(prefix(Some("t")), "/servers/t");
        assert_eq!(prefix(None), "");
    }
}
