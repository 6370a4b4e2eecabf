"""The console behind a reverse proxy under a path prefix, across replicas, with the login
through the authorization server (issue 25), in a real browser (Debian's chromium driven by
Playwright for Python):

- two `--sse --redis` replicas on one real `redis-server`, behind nginx round-robin (no
  stickiness) under `/gw/` (`--public-url http://127.0.0.1:PORT/gw`);
- a real authorization server (oidc-provider, tests/support/oidc/server.mjs) with the console
  registered as a public client (dynamic registration, redirect URI under the prefix);
- log in through it with PKCE (its own login and consent pages, answered as a user would), land on
  the overview with both replicas and Redis; the cookie is scoped to `/gw/console`; the token is
  never in a URL; the playground calls a tool several times (the requests land on both replicas);
- a callback without the flow's cookie, and one with another flow's `state`, log nobody in and
  say why on the login page.

Usage: python console_sso_browser.py BIN FAKE_UPSTREAM OIDC_DIR OUTDIR
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from playwright.sync_api import expect, sync_playwright

from common import check, free_port, start_fake, start_gateway, start_nginx, start_redis, summary

BIN, FAKE, OIDC, OUTDIR = sys.argv[1:5]


def start_auth_server(work: str) -> tuple[subprocess.Popen, str]:
    d = tempfile.mkdtemp(dir=work)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"scopes": ["mcp:tools", "mcp:admin"], "ttl": 600,
                   "clients": [{"client_id": "machine", "client_secret": "s3cret", "scope": "mcp:tools"}]}, f)
    proc = subprocess.Popen(["node", os.path.join(OIDC, "server.mjs"), d], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    check(line.startswith("listening on "), f"authorization server started ({line!r})")
    return proc, line.removeprefix("listening on ")


def register(issuer: str, redirect: str) -> str:
    """Registers the console as a public client (no secret: PKCE proves the code's owner)."""
    with urllib.request.urlopen(f"{issuer}/.well-known/openid-configuration") as r:
        endpoint = json.loads(r.read())["registration_endpoint"]
    body = {"redirect_uris": [redirect], "token_endpoint_auth_method": "none", "grant_types": ["authorization_code"],
            "response_types": ["code"], "scope": "mcp:admin mcp:tools", "client_name": "aareguru-mcp console"}
    req = urllib.request.Request(endpoint, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())["client_id"]


def machine_token(issuer: str, resource: str) -> str:
    body = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": "machine", "client_secret": "s3cret",
                                   "scope": "mcp:tools", "resource": resource}).encode()
    with urllib.request.urlopen(urllib.request.Request(f"{issuer}/token", data=body)) as r:
        return json.loads(r.read())["access_token"]


def mcp_post(url: str, token: str, body: dict, session: str | None = None) -> tuple[int, str | None]:
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
               "authorization": f"Bearer {token}"}
    if session:
        headers.update({"mcp-session-id": session, "mcp-protocol-version": "2025-06-18"})
    req = urllib.request.Request(f"{url}/mcp", data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            r.read()
            return r.status, r.headers.get("mcp-session-id")
    except urllib.error.HTTPError as e:
        return e.code, None


def open_session(url: str, token: str, name: str) -> str:
    status, session = mcp_post(url, token, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": name, "version": "1"}}})
    check(status == 200 and session, f"{name}: a session ({status})")
    mcp_post(url, token, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    return session


def health(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/health") as r:
        return json.loads(r.read())


def main() -> None:
    work = tempfile.mkdtemp()
    fake, base = start_fake(FAKE)
    redis, redis_url = start_redis(work)
    auth, issuer = start_auth_server(work)
    port = free_port()
    public = f"http://127.0.0.1:{port}/gw"
    client_id = register(issuer, f"{public}/console/oauth/callback")
    replicas, urls, logs = [], [], [[], []]
    for i in range(2):
        proc, url = start_gateway(BIN, [
            "--base-url", base, "--redis", redis_url, "--replica-id", f"r{i}", "--public-url", public,
            "--audit-log", os.path.join(work, f"audit-{i}.log"),
            "--oauth-issuer", issuer, "--console", "--console-scope", "mcp:admin", "--console-client-id", client_id], log=logs[i])
        replicas.append(proc)
        urls.append(url)
    nginx, _ = start_nginx(work, [u.removeprefix("http://") for u in urls], prefix="/gw/", port=port)
    deadline = time.monotonic() + 20
    while any(len(health(u)["cluster"]["peers"]) != 2 for u in urls) and time.monotonic() < deadline:
        time.sleep(0.2)
    check(all(len(health(u)["cluster"]["peers"]) == 2 for u in urls), "the replicas see each other")
    violations: list[str] = []
    seen: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])

            # A callback without the flow's cookie: nobody is logged in, the page says why.
            page = browser.new_page()
            page.goto(f"{public}/console/oauth/callback?code=forged&state=forged")
            expect(page.locator("#sso-error")).to_contain_text("took too long")
            check(page.context.cookies() == [] or all(c["name"] != "aareguru_console" for c in page.context.cookies()),
                  "a callback without a flow logs nobody in")
            # A flow started here, then a callback with another state.
            page.goto(f"{public}/console/oauth/start")
            expect(page.locator("input[name=login]")).to_be_visible()
            page.goto(f"{public}/console/oauth/callback?code=forged&state=not-this-flow")
            expect(page.locator("#sso-error")).to_contain_text("did not belong")
            check(all(c["name"] != "aareguru_console" for c in page.context.cookies()),
                  "a callback with another flow's state logs nobody in")
            page.close()

            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
            page.on("request", lambda r: seen.append(r.url))
            page.goto(f"{public}/console/")
            expect(page.locator("#sso-link")).to_contain_text(issuer)
            page.screenshot(path=os.path.join(OUTDIR, "login-sso.png"))
            page.click("#sso-link")
            # oidc-provider's own pages: log in, then consent.
            page.fill("input[name=login]", "alice")
            page.fill("input[name=password]", "any")
            page.click("button[type=submit]:has-text('Sign-in')")
            page.click("button[type=submit]:has-text('Continue')")
            expect(page.locator("#who")).to_have_text("alice", timeout=15000)
            check(page.url == f"{public}/console/", f"logged in through the authorization server, on the console ({page.url})")
            check(any("code_challenge_method=S256" in u for u in seen), "the authorization request carries a PKCE challenge")
            cookie = next(c for c in page.context.cookies() if c["name"] == "aareguru_console")
            check(cookie["path"] == "/gw/console" and cookie["httpOnly"] and cookie["sameSite"] == "Strict",
                  f"the login's cookie: HttpOnly, SameSite=Strict, under the prefix ({cookie['path']})")
            check(not any("access_token" in u or "eyJ" in u for u in seen), "the token is in no URL the browser saw")
            check(page.evaluate("document.cookie") == "", "the page's script cannot read the cookie")

            # The overview: both replicas and Redis.
            expect(page.locator("#cluster")).to_contain_text("Redis ok")
            expect(page.locator("#cluster")).to_contain_text("r0")
            expect(page.locator("#cluster")).to_contain_text("r1")
            expect(page.locator("[data-server=default][data-field=state]")).to_have_text("serving")
            page.screenshot(path=os.path.join(OUTDIR, "overview-cluster.png"), full_page=True)
            check(True, "overview through the proxy: the replicas, Redis, the server serving")

            # The playground across replicas: every call answered.
            page.goto(f"{public}/console/#playground")
            page.click("#pg-connect")
            page.select_option("#pg-tool", "get_current_temperature")
            page.fill("input[name=city]", "bern")
            for i in range(4):
                page.click("#pg-call")
                expect(page.locator("#pg-took")).to_contain_text("ok in", timeout=10000)
                expect(page.locator("#pg-schema")).to_have_text("matches the outputSchema")
                page.evaluate("document.getElementById('pg-took').remove()")
            hits = [health(u) for u in urls]
            moved = sum(h["cluster"]["forwarded"] + h["cluster"]["roamed"] for h in hits)
            check(moved > 0, f"the playground's session was served across both replicas (forwarded or roamed: {moved})")

            # Sessions of both replicas on one page, whichever replica serves it; each ended
            # from the page, wherever it is held: its client's next call gets 404.
            token = machine_token(issuer, f"{public}/mcp")
            held = {f"on-r{i}": (u, open_session(u, token, f"on-r{i}")) for i, u in enumerate(urls)}
            for u, session in held.values():
                status, _ = mcp_post(u, token, {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                                "params": {"name": "list_cities", "arguments": {}}}, session)
                check(status == 200, f"a call on {u} ({status})")
            for _ in range(3):  # round-robin: the page comes from one replica, then the other
                page.goto(f"{public}/console/#sessions")
                for i in range(2):
                    expect(page.locator("tr", has_text=f"on-r{i} 1")).to_contain_text(f"r{i}")
            check(page.locator("#unreachable").count() == 0, "sessions: every replica answered")
            page.screenshot(path=os.path.join(OUTDIR, "sessions-cluster.png"), full_page=True)
            check(True, "sessions: both replicas' sessions listed with their replica, on every load")
            for name, (u, session) in held.items():
                page.locator("tr", has_text=f"{name} 1").locator("button").click()
                expect(page.locator("tr", has_text=f"{name} 1")).to_have_count(0)
                for v in urls:  # on its replica and on the other (a roaming session is not restored)
                    status, _ = mcp_post(v, token, {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                                                    "params": {"name": "list_cities", "arguments": {}}}, session)
                    check(status == 404, f"{name}: ended from the console, its next call gets 404 ({status}, at {v})")

            # Recent calls of both replicas, from their audit logs, on one page.
            for _ in range(2):
                page.goto(f"{public}/console/#calls")
                for i in range(2):
                    expect(page.locator("#calls tr", has_text="list_cities").filter(has_text=f"r{i}")).to_have_count(1)
            check(True, "recent calls: both replicas' audit lines on one page")
            page.screenshot(path=os.path.join(OUTDIR, "calls-cluster.png"), full_page=True)

            # Logged out on one replica: the other refuses the same cookie too (it is gone).
            page.goto(f"{public}/console/")
            page.click("#logout")
            expect(page.locator("#sso-link")).to_be_visible()
            for _ in range(2):
                check(page.request.get(f"{public}/console/api/overview").status == 401, "logged out: closed on every replica")
            browser.close()
        check(not violations, f"no page needed anything the CSP forbids ({violations})")
    except BaseException:
        for i, log in enumerate(logs):  # what the replicas said about the logins
            for entry in log:
                if "console" in entry.get("message", "") or entry.get("level") in ("WARN", "ERROR"):
                    print(f"r{i}: {json.dumps(entry)}", file=sys.stderr)
        raise
    finally:
        for proc in replicas:
            proc.terminate()
        for proc in replicas:
            proc.wait(timeout=20)
        for proc in (nginx, auth, redis, fake):
            proc.terminate()
    print(summary())


main()
