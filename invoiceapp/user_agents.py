"""A readable name for the browser behind a session ("Firefox 131 on Windows").

Shown next to each signed-in session so people can recognise their own devices and
sign out the ones they do not. It is a hint, never a proof: a User-Agent header is
whatever the client chose to send.
"""

from __future__ import annotations

from functools import lru_cache

from ua_parser import parse

UNKNOWN_BROWSER = "Unknown browser"
# Sessions store at most this much of the header (invoiceapp.authn.sessions), and it
# keeps the cache's keys small whatever a client sends.
MAX_USER_AGENT_LENGTH = 300

# ua-parser names the mobile builds separately; people know them by the browser's name.
_BROWSER_NAMES = {
    "Chrome Mobile": "Chrome",
    "Chrome Mobile iOS": "Chrome",
    "Chrome Mobile WebView": "Android WebView",
    "Mobile Safari": "Safari",
    "Mobile Safari UI/WKWebView": "Safari",
    "Firefox Mobile": "Firefox",
    "Firefox iOS": "Firefox",
    "Edge Mobile": "Edge",
    "Opera Mobile": "Opera",
}
_OS_NAMES = {"Mac OS X": "macOS"}


@lru_cache(maxsize=1024)
def _describe(user_agent: str) -> str:
    result = parse(user_agent)
    browser = result.user_agent
    os = result.os
    os_name = _OS_NAMES.get(os.family, os.family) if os and os.family != "Other" else None
    if browser is None or browser.family == "Other":
        return f"{UNKNOWN_BROWSER} on {os_name}" if os_name else UNKNOWN_BROWSER
    name = _BROWSER_NAMES.get(browser.family, browser.family)
    # The browser's major version only: operating systems now freeze theirs in the header
    # (Android "10", macOS "10.15.7", Windows 11 says "NT 10.0"), so they would mislead.
    if browser.major:
        name = f"{name} {browser.major}"
    return f"{name} on {os_name}" if os_name else name


def describe_user_agent(user_agent: str | None) -> str:
    """A label such as "Firefox 131 on Windows", "Safari 17 on iOS" or "Unknown browser"."""
    if not user_agent or not user_agent.strip():
        return UNKNOWN_BROWSER
    return _describe(user_agent[:MAX_USER_AGENT_LENGTH])
