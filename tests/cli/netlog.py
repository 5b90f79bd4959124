#!/usr/bin/env python3
"""Fails (exit 1, naming them) when a Chromium NetLog (--log-net-log) shows
the page at a file:// URL requesting anything beyond local files: every
request a page makes is a URL_REQUEST_START_JOB whose network isolation key
is the page's site (file://). Chromium's own background requests (updates,
accounts) have other keys and are not the page's doing."""
import json
import sys

log = json.load(open(sys.argv[1]))
start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
page, outside = 0, []
for event in log.get("events", []):
    if event.get("type") != start_job:
        continue
    params = event.get("params") or {}
    if "file://" not in params.get("network_isolation_key", ""):
        continue
    page += 1
    url = params.get("url", "")
    if not url.startswith(("file:", "data:", "about:")):
        outside.append(url)
if outside:
    print("the page requested: " + ", ".join(sorted(set(outside))))
    sys.exit(1)
print("no request outside the file (%d requests by the page)" % page)
