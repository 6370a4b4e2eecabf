//! Getting tokens: the client (pre-registered, metadata document, or dynamic registration),
//! the authorization code flow with PKCE through a loopback redirect, the client-credentials
//! grant, and refresh — every token request carrying the `resource` (RFC 8707) and the client's
//! authentication in the way the authorization server takes it.
//!
//! Owns: talking to the authorization server. Must not touch: the remote MCP server.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    OAuthClient,
    assertion::ASSERTION_TYPE,
    discovery::Discovered,
    now,
    store::{ClientInfo, Tokens},
};

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn random() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// POSTs `form` to a token endpoint; its JSON answer, or why `who` refused the `what`.
pub(super) async fn post_form(
    req: reqwest::RequestBuilder,
    form: &[(&str, String)],
    who: &str,
    what: &str,
) -> Result<Value, String> {
    let r = req
        .form(form)
        .send()
        .await
        .map_err(|e| format!("{what} at {who}: {e}"))?;
    let status = r.status();
    let answer: Value = r.json().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!(
            "{who} refused the {what} (HTTP {}): {}",
            status.as_u16(),
            answer["error_description"]
                .as_str()
                .or(answer["error"].as_str())
                .unwrap_or("")
        ));
    }
    Ok(answer)
}

impl OAuthClient {
    /// How the pre-registered client authenticates when that is not up to the server's list:
    /// with its key (`private_key_jwt`) when it has one.
    fn own_auth_method(&self) -> Option<String> {
        self.signer.as_ref().map(|_| "private_key_jwt".to_string())
    }

    /// The client to use at `found`'s authorization server, registering one if needed.
    pub(super) async fn client(
        &self,
        found: &Discovered,
        redirect_uri: Option<&str>,
    ) -> Result<ClientInfo, String> {
        let server = &found.server;
        let method = |has_secret: bool| -> String {
            let supported = &server.token_auth_methods;
            let pick = |m: &str| supported.is_empty() || supported.iter().any(|s| s == m);
            if !has_secret {
                "none".into()
            } else if pick("client_secret_basic") {
                "client_secret_basic".into()
            } else {
                "client_secret_post".into()
            }
        };
        if let Some(id) = &self.config.client_id {
            return Ok(ClientInfo {
                client_id: id.clone(),
                client_secret: self.config.client_secret.clone(),
                auth_method: self
                    .own_auth_method()
                    .unwrap_or_else(|| method(self.config.client_secret.is_some())),
                issuer: server.issuer.clone(),
                redirect_uri: redirect_uri.map(str::to_string),
            });
        }
        if server.cimd
            && let Some(url) = &self.config.client_metadata_url
        {
            return Ok(ClientInfo {
                client_id: url.clone(),
                client_secret: None,
                auth_method: "none".into(),
                issuer: server.issuer.clone(),
                redirect_uri: redirect_uri.map(str::to_string),
            });
        }
        let saved = self.saved.lock().client.clone();
        if let Some(c) =
            saved.filter(|c| c.issuer == server.issuer && c.redirect_uri.as_deref() == redirect_uri)
        {
            return Ok(c);
        }
        let endpoint = server.registration_endpoint.as_deref().ok_or(
            "the authorization server offers no dynamic registration; pass --oauth-client-id",
        )?;
        let mut metadata = json!({
            "client_name": "aareguru-mcp bridge",
            "grant_types": if self.config.client_credentials { json!(["client_credentials"]) } else { json!(["authorization_code", "refresh_token"]) },
            "response_types": if self.config.client_credentials { json!([]) } else { json!(["code"]) },
            "token_endpoint_auth_method": if server.token_auth_methods.iter().any(|m| m == "none") || server.token_auth_methods.is_empty() { "none".to_string() } else { method(true) },
        });
        if let Some(uri) = redirect_uri {
            metadata["redirect_uris"] = json!([uri]);
        }
        let r = self
            .http
            .post(endpoint)
            .json(&metadata)
            .send()
            .await
            .map_err(|e| format!("client registration: {e}"))?;
        let status = r.status();
        let answer: Value = r.json().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!(
                "client registration refused (HTTP {}): {answer}",
                status.as_u16()
            ));
        }
        let client = ClientInfo {
            client_id: answer["client_id"]
                .as_str()
                .ok_or("the registration answer has no client_id")?
                .to_string(),
            client_secret: answer["client_secret"].as_str().map(str::to_string),
            auth_method: answer["token_endpoint_auth_method"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| method(answer["client_secret"].is_string())),
            issuer: server.issuer.clone(),
            redirect_uri: redirect_uri.map(str::to_string),
        };
        tracing::info!(client_id = %client.client_id, issuer = %server.issuer, "registered with the authorization server");
        let mut saved = self.saved.lock();
        saved.client = Some(client.clone());
        self.store.save(&saved);
        Ok(client)
    }

    /// POSTs `form` to the token endpoint with the client's authentication.
    pub(super) async fn token_request(
        &self,
        found: &Discovered,
        client: &ClientInfo,
        mut form: Vec<(&str, String)>,
    ) -> Result<Tokens, String> {
        form.push(("resource", found.resource.clone()));
        let mut req = self.http.post(&found.server.token_endpoint);
        match (client.auth_method.as_str(), &client.client_secret) {
            ("client_secret_basic", Some(secret)) => {
                req = req.basic_auth(&client.client_id, Some(secret));
            }
            ("client_secret_post", Some(secret)) => {
                form.push(("client_id", client.client_id.clone()));
                form.push(("client_secret", secret.clone()));
            }
            ("private_key_jwt", _) if let Some(signer) = &self.signer => {
                // The audience is the authorization server, named by its issuer.
                let jwt = signer.assertion(&client.client_id, &found.server.issuer)?;
                form.push(("client_id", client.client_id.clone()));
                form.push(("client_assertion_type", ASSERTION_TYPE.to_string()));
                form.push(("client_assertion", jwt));
            }
            _ => form.push(("client_id", client.client_id.clone())),
        }
        let answer = post_form(req, &form, "the authorization server", "token request").await?;
        let access_token = answer["access_token"]
            .as_str()
            .ok_or("the token answer has no access_token")?
            .to_string();
        Ok(Tokens {
            access_token,
            refresh_token: answer["refresh_token"].as_str().map(str::to_string),
            expires_at: answer["expires_in"].as_u64().map(|s| now() + s),
            scope: answer["scope"].as_str().map(str::to_string),
        })
    }

    pub(super) async fn client_credentials(
        &self,
        found: &Discovered,
        scope: Option<&str>,
    ) -> Result<Tokens, String> {
        let form = vec![("grant_type", "client_credentials".to_string())];
        self.grant(found, form, scope).await
    }

    /// A grant without a browser (`form`, plus `scope`) as the client, at the token endpoint.
    pub(super) async fn grant(
        &self,
        found: &Discovered,
        mut form: Vec<(&str, String)>,
        scope: Option<&str>,
    ) -> Result<Tokens, String> {
        let client = self.client(found, None).await?;
        if let Some(s) = scope {
            form.push(("scope", s.to_string()));
        }
        self.token_request(found, &client, form).await
    }

    pub(super) async fn refresh(&self) -> Result<(), String> {
        let known = self.found.lock().clone();
        let found = match known {
            Some(f) => f,
            None => {
                // A new process with stored tokens: find the token endpoint again.
                let f = super::discovery::discover(
                    &self.http,
                    &self.server_url,
                    &super::discovery::Challenge::default(),
                )
                .await?;
                *self.found.lock() = Some(f.clone());
                f
            }
        };
        let (saved_client, tokens) = {
            let s = self.saved.lock();
            (s.client.clone(), s.tokens.clone())
        };
        let refresh = tokens
            .and_then(|t| t.refresh_token)
            .ok_or("no refresh token")?;
        let client = match (&self.config.client_id, saved_client) {
            (Some(id), _) => ClientInfo {
                client_id: id.clone(),
                client_secret: self.config.client_secret.clone(),
                auth_method: self.own_auth_method().unwrap_or_else(|| {
                    if self.config.client_secret.is_some() {
                        "client_secret_basic".into()
                    } else {
                        "none".into()
                    }
                }),
                issuer: found.server.issuer.clone(),
                redirect_uri: None,
            },
            (None, Some(c)) => c,
            (None, None) => return Err("no client to refresh with".into()),
        };
        let mut tokens = self
            .token_request(
                &found,
                &client,
                vec![
                    ("grant_type", "refresh_token".into()),
                    ("refresh_token", refresh.clone()),
                ],
            )
            .await?;
        tokens.refresh_token.get_or_insert(refresh);
        tracing::info!("access token refreshed");
        let mut saved = self.saved.lock();
        saved.tokens = Some(tokens);
        self.store.save(&saved);
        Ok(())
    }

    /// The authorization code flow: a loopback listener for the redirect, the user's browser
    /// for the authorization, PKCE and `state` checked, the code exchanged.
    pub(super) async fn authorization_code(
        &self,
        found: &Discovered,
        scope: Option<&str>,
    ) -> Result<Tokens, String> {
        // The port a stored registration was made for, when it is free, so that client is
        // reused rather than registering a new one for every authorization.
        let registered_port = self
            .saved
            .lock()
            .client
            .as_ref()
            .filter(|c| c.issuer == found.server.issuer)
            .and_then(|c| c.redirect_uri.as_deref())
            .and_then(|u| u.strip_prefix("http://127.0.0.1:"))
            .and_then(|rest| rest.split('/').next())
            .and_then(|p| p.parse::<u16>().ok());
        let listener = match (self.config.redirect_port, registered_port) {
            (0, Some(p)) => match tokio::net::TcpListener::bind(("127.0.0.1", p)).await {
                Ok(l) => Ok(l),
                Err(_) => tokio::net::TcpListener::bind(("127.0.0.1", 0)).await,
            },
            (port, _) => tokio::net::TcpListener::bind(("127.0.0.1", port)).await,
        }
        .map_err(|e| format!("cannot listen for the redirect on 127.0.0.1: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let redirect_uri = format!("http://127.0.0.1:{port}/callback");
        let client = self.client(found, Some(&redirect_uri)).await?;
        let verifier = random();
        let challenge = b64url(&Sha256::digest(verifier.as_bytes()));
        let state = random();
        let mut url = reqwest::Url::parse(&found.server.authorization_endpoint)
            .map_err(|e| format!("authorization endpoint: {e}"))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &client.client_id)
                .append_pair("redirect_uri", &redirect_uri)
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256")
                .append_pair("state", &state)
                .append_pair("resource", &found.resource);
            if let Some(s) = scope {
                q.append_pair("scope", s);
            }
        }
        eprintln!(
            "aareguru-mcp: authorize access to {} in your browser:\n  {url}",
            self.server_url
        );
        self.open_browser(url.as_str());
        let timeout = self.config.timeout;
        let params = tokio::time::timeout(timeout, receive_redirect(&listener))
            .await
            .map_err(|_| format!("no authorization within {timeout:?}"))??;
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if let Some(e) = get("error") {
            return Err(format!(
                "the authorization was refused: {e} {}",
                get("error_description").unwrap_or_default()
            ));
        }
        if get("state").as_deref() != Some(state.as_str()) {
            return Err("the redirect's state does not match (refused)".into());
        }
        if let Some(iss) = get("iss")
            && iss.trim_end_matches('/') != found.server.issuer.trim_end_matches('/')
        {
            return Err("the redirect names another issuer (refused)".into());
        }
        let code = get("code").ok_or("the redirect carries no code")?;
        self.token_request(
            found,
            &client,
            vec![
                ("grant_type", "authorization_code".into()),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", verifier),
            ],
        )
        .await
    }

    /// Runs `--oauth-browser` (or the system's opener) with the URL as its last argument.
    fn open_browser(&self, url: &str) {
        let command = self.config.browser.clone().or_else(|| {
            ["xdg-open", "open"]
                .into_iter()
                .find(|c| {
                    std::env::var_os("PATH")
                        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(c).exists()))
                })
                .map(str::to_string)
        });
        let Some(command) = command else {
            return;
        };
        let mut parts = command.split_whitespace();
        let Some(program) = parts.next() else {
            return;
        };
        let spawned = std::process::Command::new(program)
            .args(parts)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn();
        match spawned {
            Ok(mut child) => {
                // Reaped in the background so it leaves no zombie.
                std::thread::spawn(move || child.wait());
            }
            Err(e) => {
                tracing::warn!(command = %command, error = %e, "cannot open the browser; open the URL yourself")
            }
        }
    }
}

/// Waits for the browser's redirect to `/callback` and answers it; the query parameters.
async fn receive_redirect(
    listener: &tokio::net::TcpListener,
) -> Result<Vec<(String, String)>, String> {
    loop {
        let (mut socket, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 16 * 1024];
        let mut len = 0;
        while len < buf.len() {
            let n =
                match tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf[len..]))
                    .await
                {
                    Ok(Ok(n)) if n > 0 => n,
                    _ => break,
                };
            len += n;
            if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        let request = String::from_utf8_lossy(&buf[..len]);
        let target = request.split_whitespace().nth(1).unwrap_or("");
        let Some(query) = target.strip_prefix("/callback") else {
            let _ = socket
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            continue;
        };
        let params: Vec<(String, String)> = reqwest::Url::parse(&format!("http://x/{query}"))
            .map(|u| {
                u.query_pairs()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let body = "<!doctype html><title>aareguru-mcp</title><p>Authorization received; you can close this window.</p>";
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = socket.write_all(answer.as_bytes()).await;
        return Ok(params);
    }
}
