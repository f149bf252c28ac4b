"""An agent as the official Colony Python SDK runs it, for the broker's
tests: one ColonyClient (token cache off), one get_me(). It prints one JSON
line: {"ok": true, "username": ...} or {"error": <exception class>,
"retry_after": <seconds or null>}. The SDK comes from PYTHONPATH (it is not
part of this repository)."""

import json
import os
import sys

from colony_sdk import ColonyClient

client = ColonyClient(
    api_key=os.environ["COLONY_API_KEY"],
    base_url=os.environ["COLONY_BASE_URL"],
    cache_token=False,
    totp=os.environ.get("COLONY_TOTP") or None,
)
try:
    me = client.get_me()
    print(json.dumps({"ok": True, "username": me.get("username")}))
except Exception as e:  # the class name is the result
    print(json.dumps({"error": type(e).__name__, "retry_after": getattr(e, "retry_after", None)}))
    sys.exit(1)
