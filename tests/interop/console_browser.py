"""The console in a real browser (issue 25): Debian's chromium driven by Playwright for Python,
against a gateway with a servers file. Logs in with a key; sees the servers with their states;
watches a shared child's restart count change without reloading when the child is killed; calls
a tool in the playground and sees its result checked against the outputSchema; answers an
elicitation from server-everything; ends a session and sees its client's next call get 404. No
page may need inline script (the CSP would block it: the browser reports every violation).
Screenshots of each page go to OUTDIR (the README shows them).

Usage: python console_browser.py BIN FAKE_UPSTREAM NODE_DIR FIXTURE OUTDIR
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import tempfile
import urllib.request

from playwright.sync_api import expect, sync_playwright

from common import check, start_fake, start_gateway, summary

BIN, FAKE, NODE_DIR, FIXTURE, OUTDIR = sys.argv[1:6]
KEY = "console-test-key-0123456789"
EVERYTHING = os.path.join(NODE_DIR, "node_modules", "@modelcontextprotocol", "server-everything", "dist", "index.js")


def mcp_post(url: str, body: dict, session: str | None = None) -> tuple[int, dict, str]:
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream", "x-api-key": KEY}
    if session:
        headers.update({"mcp-session-id": session, "mcp-protocol-version": "2025-06-18"})
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, {}, e.read().decode()


def health(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/health") as r:
        return json.loads(r.read())


def main() -> None:
    fake, base = start_fake(FAKE)
    work = tempfile.mkdtemp()
    conf = os.path.join(work, "servers.json")
    with open(conf, "w") as f:
        json.dump({"mcpServers": {
            "aare": {"command": BIN, "args": ["--stdio", "--base-url", base]},
            "everything": {"command": "node", "args": [EVERYTHING]},
            "fx": {"command": FIXTURE, "args": [], "gateway": {"backend": "shared"}},
            "fx2": {"command": FIXTURE, "args": []},
        }, "groups": {"both": {"members": ["aare", "fx2"]}}}, f)
    gw, url = start_gateway(BIN, ["--config", conf, "--api-key", KEY, "--console",
                                  "--audit-log", os.path.join(work, "audit.log")])
    violations: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            context = browser.new_context(viewport={"width": 1280, "height": 860})
            page = context.new_page()
            page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)

            # The login page; a wrong key is refused on the page.
            r = page.goto(f"{url}/console/")
            csp = r.headers.get("content-security-policy", "")
            check(csp.startswith("default-src 'none'; script-src 'self'"), f"the CSP header ({csp})")
            page.fill("#credential", "wrong")
            page.click("button[type=submit]")
            expect(page.locator("#error")).to_contain_text("unknown")
            page.screenshot(path=os.path.join(OUTDIR, "login.png"))
            check(True, "a wrong key is refused on the login page")
            page.fill("#credential", KEY)
            page.click("button[type=submit]")

            # The overview: every server with its state, and the charts.
            for name in ("aare", "everything", "fx", "fx2", "both"):
                expect(page.locator(f"[data-server={name}][data-field=state]")).to_have_text("serving")
            check(True, "the overview lists the servers, serving")
            expect(page.locator("#status")).to_contain_text("ok")
            expect(page.locator("#status")).to_contain_text(" · up ")
            check(True, "the overview shows the status, version and uptime")
            cookies = page.context.cookies()
            check(any(c["name"] == "aareguru_console" and c["httpOnly"] and c["sameSite"] == "Strict" for c in cookies),
                  "the login is an HttpOnly SameSite=Strict cookie")
            check(page.evaluate("document.cookie") == "", "the page's script cannot read it")
            # Some calls for the charts.
            status, headers, _ = mcp_post(f"{url}/servers/fx/mcp", {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "browser-test", "version": "1"}}})
            fx_session = headers["mcp-session-id"]
            mcp_post(f"{url}/servers/fx/mcp", {"jsonrpc": "2.0", "method": "notifications/initialized"}, fx_session)
            for i in range(20):
                mcp_post(f"{url}/servers/fx/mcp", {"jsonrpc": "2.0", "id": 10 + i, "method": "tools/call",
                                                    "params": {"name": "echo", "arguments": {"i": i}}}, fx_session)
            expect(page.locator("figcaption").first).to_contain_text("calls", timeout=5000)
            page.wait_for_timeout(2500)

            # Kill the shared child: its restart count changes on the page, which is not reloaded.
            page.evaluate("window.__marker = 1")
            expect(page.locator("[data-server=fx][data-field=restarts]")).to_have_text("0")
            pid = next(s for s in health(url)["servers"] if s["name"] == "fx")["shared_children"][0]["pid"]
            os.kill(pid, signal.SIGKILL)
            expect(page.locator("[data-server=fx][data-field=restarts]")).to_have_text("1", timeout=10000)
            check(page.evaluate("window.__marker") == 1, "killed child: the page saw it change without a reload")
            page.screenshot(path=os.path.join(OUTDIR, "overview.png"), full_page=True)

            # The playground: a tool of this program, its result checked against its outputSchema.
            page.goto(f"{url}/console/#playground")
            page.select_option("#pg-server", "aare")
            page.click("#pg-connect")
            page.select_option("#pg-tool", "get_current_temperature")
            page.fill("input[name=city]", "bern")
            page.click("#pg-call")
            expect(page.locator("#pg-took")).to_contain_text("ok in")
            expect(page.locator("#pg-schema")).to_have_text("matches the outputSchema")
            check("Bern" in page.locator("#pg-text").inner_text() or "°" in page.locator("#pg-text").inner_text(),
                  "playground: the call's text")
            page.screenshot(path=os.path.join(OUTDIR, "playground.png"), full_page=True)

            # An elicitation from server-everything, answered in the page.
            page.select_option("#pg-server", "everything")
            page.click("#pg-connect")
            page.select_option("#pg-tool", "trigger-elicitation-request")
            page.click("#pg-call")
            expect(page.locator("dialog#asked")).to_be_visible(timeout=10000)
            page.screenshot(path=os.path.join(OUTDIR, "elicitation.png"))
            page.click("#ask-decline")
            expect(page.locator("#pg-text")).to_contain_text("decline", ignore_case=True, timeout=10000)
            check(True, "elicitation: answered in the page, the answer reached the server")

            # Sampling from server-everything: the operator writes the model's answer.
            page.select_option("#pg-tool", "trigger-sampling-request")
            page.fill("input[name=prompt]", "how warm is the Aare?")
            page.click("#pg-call")
            expect(page.locator("dialog#asked")).to_contain_text("how warm is the Aare?", timeout=10000)
            page.fill("#ask-reply", "19 degrees, go swimming")
            page.screenshot(path=os.path.join(OUTDIR, "sampling.png"))
            page.click("#ask-send")
            expect(page.locator("#pg-text")).to_contain_text("19 degrees, go swimming", timeout=10000)
            check(True, "sampling: the operator's answer reached the server and came back in its result")

            # Servers, and a server's page with its tools and their schemas; "try it" opens the
            # playground on that tool.
            page.goto(f"{url}/console/#servers")
            page.click("#count-tools")
            for name in ("aare", "everything", "fx", "fx2", "both"):
                expect(page.locator(f"[data-server={name}][data-field=tools]")).to_have_text(re.compile(r"^[0-9]+$"), timeout=15000)
            counted = int(page.locator("[data-server=aare][data-field=tools]").inner_text())
            check(counted >= 7, f"servers: tools counted per server (this program's: {counted})")
            counts = {n: int(page.locator(f"[data-server={n}][data-field=tools]").inner_text()) for n in ("aare", "fx2", "both")}
            check(counts["both"] == counts["aare"] + counts["fx2"], f"servers: a group counts its members' tools ({counts})")
            page.click("a[href='#server/everything']")
            card = page.locator("[data-tool=trigger-sampling-request]")
            expect(card).to_have_count(1, timeout=10000)
            card.locator("summary").click()
            expect(card.locator("pre")).to_contain_text('"prompt"')
            check(page.locator("#server-tools details").count() >= 10, "server page: every tool of server-everything listed")
            page.screenshot(path=os.path.join(OUTDIR, "server.png"), full_page=True)
            card.locator("a.try").click()
            expect(page.locator("#pg-tool")).to_have_value("trigger-sampling-request", timeout=10000)
            check(True, "server page: try it opens the playground on that tool")

            # Sessions: end one; its client's next call gets 404.
            page.goto(f"{url}/console/#sessions")
            row = page.locator("tr", has_text="browser-test 1")
            expect(row).to_have_count(1)
            page.screenshot(path=os.path.join(OUTDIR, "sessions.png"), full_page=True)
            row.locator("button").click()
            expect(page.locator("tr", has_text="browser-test 1")).to_have_count(0)
            status, _, _ = mcp_post(f"{url}/servers/fx/mcp", {"jsonrpc": "2.0", "id": 99, "method": "tools/call",
                                                               "params": {"name": "echo", "arguments": {}}}, fx_session)
            check(status == 404, f"an ended session's next call gets 404 ({status})")

            # Recent calls, from the audit log: the playground's call is there.
            page.goto(f"{url}/console/#calls")
            expect(page.locator("#calls")).to_contain_text("get_current_temperature")
            page.screenshot(path=os.path.join(OUTDIR, "calls.png"), full_page=True)
            check(True, "recent calls: the playground's call, from the audit log")

            # A page with a playground session, closed: its session ends with it.
            def console_sessions() -> int:
                views = page.request.get(f"{url}/console/api/sessions").json()["sessions"]
                return sum(1 for v in views if (v.get("client") or "").startswith("aareguru-mcp console"))
            before = console_sessions()
            other = page.context.new_page()
            other.goto(f"{url}/console/#playground")
            other.select_option("#pg-server", "fx2")
            other.click("#pg-connect")
            expect(other.locator("#pg-tool")).to_be_visible()
            check(console_sessions() == before + 1, "a second page's playground session is listed")
            other.close(run_before_unload=True)
            for _ in range(50):
                if console_sessions() == before:
                    break
                page.wait_for_timeout(100)
            check(console_sessions() == before, "the playground's session ended with its page")

            # Logged out, nothing but the login page.
            page.click("#logout")
            expect(page.locator("#credential")).to_be_visible()
            check(page.request.get(f"{url}/console/api/overview").status == 401, "logged out: the views are closed")
            browser.close()
        check(not violations, f"no page needed anything the CSP forbids ({violations})")
    finally:
        gw.terminate()
        gw.wait(timeout=20)
        fake.terminate()
    print(summary())


main()
