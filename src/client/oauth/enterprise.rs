//! Enterprise-managed authorization ("cross-app access", SEP-990): where a company's identity
//! provider (IdP) decides which apps may reach which MCP servers, the user signs in once at the
//! IdP, and the bridge trades that sign-in — the user's ID token, read from
//! `--oauth-id-token-file` at every authorization so an SSO helper can keep it fresh — first at
//! the IdP for an identity assertion grant (ID-JAG; RFC 8693 token exchange) naming the MCP
//! server's authorization server and resource, then at that authorization server for an access
//! token (the JWT-bearer grant, RFC 7523) as the pre-registered client. No browser.
//!
//! Owns: the two exchanges. Must not touch: MCP messages.

use super::{OAuthClient, discovery, discovery::Discovered, flow::post_form, store::Tokens};

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
const ID_JAG: &str = "urn:ietf:params:oauth:token-type:id-jag";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

impl OAuthClient {
    /// An access token for `found` by the user's IdP sign-in.
    pub(super) async fn cross_app(
        &self,
        found: &Discovered,
        scope: Option<&str>,
    ) -> Result<Tokens, String> {
        let grant = self.identity_assertion(found, scope).await?;
        let form = vec![("grant_type", JWT_BEARER.to_string()), ("assertion", grant)];
        self.grant(found, form, scope).await
    }

    /// The IdP's identity assertion grant for `found`'s authorization server and resource.
    async fn identity_assertion(
        &self,
        found: &Discovered,
        scope: Option<&str>,
    ) -> Result<String, String> {
        let (Some(file), Some(idp)) = (&self.config.id_token_file, &self.config.idp_issuer) else {
            return Err(
                "cross-app access needs --oauth-id-token-file and --oauth-idp-issuer".into(),
            );
        };
        let id_token = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read the ID token ({}): {e}", file.display()))?
            .trim()
            .to_string();
        if id_token.is_empty() {
            return Err(format!("the ID token file {} is empty", file.display()));
        }
        let idp = discovery::authorization_server(&self.http, idp, false)
            .await
            .map_err(|e| format!("the identity provider: {e}"))?;
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE.to_string()),
            ("subject_token", id_token),
            ("subject_token_type", ID_TOKEN.to_string()),
            ("requested_token_type", ID_JAG.to_string()),
            ("audience", found.server.issuer.clone()),
            ("resource", found.resource.clone()),
        ];
        if let Some(s) = scope {
            form.push(("scope", s.to_string()));
        }
        let mut req = self.http.post(&idp.token_endpoint);
        match (&self.config.idp_client_id, &self.config.idp_client_secret) {
            (Some(id), Some(secret)) => req = req.basic_auth(id, Some(secret)),
            (Some(id), None) => form.push(("client_id", id.clone())),
            _ => {}
        }
        let answer = post_form(req, &form, "the identity provider", "token exchange").await?;
        if let Some(kind) = answer["issued_token_type"].as_str()
            && kind != ID_JAG
        {
            return Err(format!(
                "the identity provider issued a {kind}, not an identity assertion grant"
            ));
        }
        answer["access_token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| "the identity provider's answer has no access_token".to_string())
    }
}
