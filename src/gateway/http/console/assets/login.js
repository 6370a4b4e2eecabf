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
