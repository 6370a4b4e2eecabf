// The console's login: the credential goes to the gateway once, in a POST body; the gateway
// keeps it in an HttpOnly cookie this script never sees again.
"use strict";
document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("error");
  const input = document.getElementById("credential");
  error.hidden = true;
  const r = await fetch("login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ credential: input.value }),
    credentials: "same-origin",
  });
  input.value = "";
  if (r.ok) {
    location.reload();
    return;
  }
  const body = await r.json().catch(() => ({}));
  error.textContent = body.error || `login refused (${r.status})`;
  error.hidden = false;
});

// The login through the authorization server (PKCE, done by the gateway), where one is set up;
// and what went wrong with the last one (a code in the URL, never text to show as is).
const REASONS = {
  expired: "The login took too long or its cookie is gone; try again.",
  state: "The answer from the authorization server did not belong to this login; try again.",
  refused: "The authorization server did not log you in.",
  token: "The authorization server's token was not accepted.",
  scope: "This account does not have the console's scope.",
  large: "The access token is too large to keep in a cookie.",
  unavailable: "The authorization server cannot be reached now.",
};
fetch("oauth", { credentials: "same-origin" }).then((r) => r.json()).then((o) => {
  if (!o.oauth) return;
  document.getElementById("sso-link").textContent = `Log in through ${o.oauth}`;
  document.getElementById("sso").hidden = false;
}).catch(() => {});
const why = new URLSearchParams(location.search).get("login_error");
if (why) {
  const p = document.getElementById("sso-error");
  p.textContent = REASONS[why] || "The login failed.";
  p.hidden = false;
  history.replaceState(null, "", location.pathname);
}
