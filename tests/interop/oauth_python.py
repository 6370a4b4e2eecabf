"""Interop: the Python SDK's OAuth clients (mcp 2.3.0) against the gateway as a resource server,
with a real authorization server (oidc-provider, tests/support/oidc/server.mjs).

1. Client credentials (`ClientCredentialsOAuthProvider`, a machine client): the 401 leads the SDK
   to the protected-resource metadata, the authorization server's metadata and a token for this
   resource; the whole battery runs (2026-07-28 and 2025-11-25).
2. Authorization code with PKCE, dynamic client registration and the `resource` parameter
   (`OAuthClientProvider`), the login and consent answered headlessly by following the
   authorization server's own pages; then a short-lived token is refreshed.

Usage: python oauth_python.py BIN FAKE_UPSTREAM OIDC_DIR
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
from urllib.parse import parse_qs, urljoin, urlparse

import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from battery import exercise
from common import check, start_fake, start_gateway, summary

BIN, FAKE, OIDC = sys.argv[1], sys.argv[2], sys.argv[3]


class Memory:
    """Token storage in memory, counting what the SDK stores."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None
        self.stored = 0

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens
        self.stored += 1

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, info):
        self.client = info


def start_auth_server(config: dict) -> tuple[subprocess.Popen, str]:
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f)
    proc = subprocess.Popen(["node", os.path.join(OIDC, "server.mjs"), d], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    check(line.startswith("listening on "), f"authorization server started ({line!r})")
    return proc, line.removeprefix("listening on ")


async def client_credentials(base: str, issuer: str) -> None:
    for mode, version in [("auto", "2026-07-28"), ("legacy", "2025-11-25")]:
        storage = Memory()
        provider = ClientCredentialsOAuthProvider(
            server_url=f"{base}/mcp",
            storage=storage,
            client_id="machine",
            client_secret="s3cret",
            token_endpoint_auth_method="client_secret_post",
            scope="mcp:tools",
            issuer=issuer,
        )
        async with httpx2.AsyncClient(auth=provider, timeout=30) as http:
            async with Client(streamable_http_client(f"{base}/mcp", http_client=http), mode=mode) as c:
                check(c.protocol_version == version, f"client credentials {mode}: {c.protocol_version}")
                await exercise(c, f"client credentials {mode}")
        check(storage.tokens is not None and storage.stored >= 1, f"client credentials {mode}: a token was obtained")


def answer_login(authorization_url: str) -> AuthorizationCodeResult:
    """Follows the authorization server's pages as a user would: login, then consent, until the
    redirect to the client's callback."""
    with httpx2.Client(follow_redirects=False, timeout=30) as browser:
        url = authorization_url
        for _ in range(20):
            r = browser.get(url)
            if r.status_code in (302, 303):
                location = urljoin(url, r.headers["location"])
                if location.startswith("http://127.0.0.1:1/callback"):
                    q = parse_qs(urlparse(location).query)
                    check("code" in q, f"authorization answered with a code ({location[:120]})")
                    return AuthorizationCodeResult(code=q["code"][0], state=q.get("state", [None])[0], iss=q.get("iss", [None])[0])
                url = location
                continue
            form = re.search(r'<form[^>]*action="([^"]+)"', r.text)
            check(form is not None, f"a login or consent form at {url}")
            action = urljoin(url, form.group(1))
            fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', r.text))
            if "login" in r.text.lower() and 'name="login"' in r.text:
                fields.update({"login": "alice", "password": "any"})
            r = browser.post(action, data=fields)
            check(r.status_code in (302, 303), f"form {action} answered {r.status_code}")
            url = urljoin(action, r.headers["location"])
            if url.startswith("http://127.0.0.1:1/callback"):
                q = parse_qs(urlparse(url).query)
                return AuthorizationCodeResult(code=q["code"][0], state=q.get("state", [None])[0], iss=q.get("iss", [None])[0])
    raise RuntimeError("the authorization never reached the callback")


async def authorization_code(base: str, issuer: str) -> None:
    pending: dict = {}

    async def redirect_handler(url: str) -> None:
        check("code_challenge=" in url and "code_challenge_method=S256" in url, "PKCE in the authorization request")
        check("resource=" in url, "the resource parameter in the authorization request")
        pending["result"] = await asyncio.to_thread(answer_login, url)

    async def callback_handler() -> AuthorizationCodeResult:
        return pending.pop("result")

    storage = Memory()
    provider = OAuthClientProvider(
        server_url=f"{base}/mcp",
        client_metadata=OAuthClientMetadata(
            client_name="aareguru interop",
            redirect_uris=["http://127.0.0.1:1/callback"],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
            scope="mcp:tools offline_access",
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )
    async with httpx2.AsyncClient(auth=provider, timeout=30) as http:
        async with Client(streamable_http_client(f"{base}/mcp", http_client=http)) as c:
            check(storage.client is not None and storage.client.client_id, "dynamic client registration")
            r = await c.call_tool("get_flow_danger_level", {"city": "bern"})
            check(not r.is_error, "authorization code: a tool call as alice")
            first = storage.tokens.access_token
            check(storage.tokens.refresh_token is not None, "a refresh token was issued")
            # The access token lives 3 s: past that the SDK refreshes it before the next call.
            await asyncio.sleep(4)
            r = await c.call_tool("get_flow_danger_level", {"city": "thun"})
            check(not r.is_error, "a call after the access token expired")
            check(storage.tokens.access_token != first, "the token was refreshed")


async def main() -> None:
    fake, upstream = start_fake(FAKE)
    auth, issuer = start_auth_server({"clients": [{"client_id": "machine", "client_secret": "s3cret"}], "ttl": 3})
    procs = [fake, auth]
    try:
        gw, base = start_gateway(
            BIN,
            ["--oauth-issuer", issuer, "--oauth-scope", "mcp:tools"],
            {"AAREGURU_BASE_URL": upstream},
        )
        procs.append(gw)
        await client_credentials(base, issuer)
        print("Python SDK client credentials -> gateway: ok")
        await authorization_code(base, issuer)
        print("Python SDK authorization code + PKCE + registration + refresh -> gateway: ok")
    finally:
        for p in procs:
            p.terminate()
            p.wait()
    print(summary())


asyncio.run(main())
