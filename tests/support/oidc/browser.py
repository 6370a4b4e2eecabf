#!/usr/bin/env python3
"""A headless "browser" for the OAuth tests: opens the authorization URL it is given and answers
oidc-provider's development login and consent pages as a user would (login "alice"), following
every redirect — the last one lands on the client's loopback redirect listener.

Usage: browser.py URL   (as --oauth-browser "python3 browser.py")
"""

import html
import http.cookiejar
import re
import sys
import urllib.parse
import urllib.request

url = sys.argv[-1]
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
page = opener.open(url, timeout=30)
for _ in range(10):
    body = page.read().decode("utf-8", "replace")
    form = re.search(r'<form[^>]*action="([^"]+)"', body)
    if form is None:
        break  # the redirect listener's page: done
    action = urllib.parse.urljoin(page.geturl(), html.unescape(form.group(1)))
    fields = {name: html.unescape(value) for name, value in re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', body)}
    if 'name="login"' in body:
        fields.update({"login": "alice", "password": "any"})
    page = opener.open(action, data=urllib.parse.urlencode(fields).encode(), timeout=30)
