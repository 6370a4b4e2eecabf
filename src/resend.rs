//! Requests to an authorization server, sent once more when they failed before any answer.
//!
//! Owns: the retry. Must not touch: what the answers mean.

/// Sends `request`, and once more on a fresh connection when it failed before any answer for a
/// reason other than a timeout. An issuer that closes idle keep-alive connections (Node's
/// default: after 5 s) can close the one a request was just written to; hyper then fails the
/// request, and without this the gateway would refuse good tokens until its next key fetch.
/// Every request here is safe to repeat (discovery, keys, introspection), and an authorization
/// code whose first exchange got no answer is lost either way.
pub async fn send_retrying(request: reqwest::RequestBuilder) -> reqwest::Result<reqwest::Response> {
    let again = request.try_clone();
    match request.send().await {
        Err(e) if !e.is_timeout() && again.is_some() => {
            tracing::debug!(error = %e, "an authorization server request failed; trying once more");
            again.expect("checked").send().await
        }
        answer => answer,
    }
}
