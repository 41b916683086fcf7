"""Sessions are listed by a readable device name, parsed from the User-Agent header."""

from __future__ import annotations

import pytest

from invoiceapp import user_agents
from invoiceapp.user_agents import describe_user_agent

FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:131.0) Gecko/20100101 Firefox/131.0"
CHROME_ANDROID = (
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/129.0.0.0 Mobile Safari/537.36"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1"
)
EDGE_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0"
)


@pytest.mark.parametrize(
    "user_agent, described",
    [
        (FIREFOX_WINDOWS, "Firefox 131 on Windows"),
        # "Chrome Mobile" and "Mobile Safari" are shown by the names people know.
        (CHROME_ANDROID, "Chrome 129 on Android"),
        (SAFARI_IPHONE, "Safari 17 on iOS"),
        (EDGE_MAC, "Edge 130 on macOS"),
        ("curl/8.5.0", "curl 8"),
        ("Mozilla/5.0 (Windows NT 10.0)", "Unknown browser on Windows"),
        ("nothing anybody recognises", "Unknown browser"),
    ],
)
def test_user_agents_are_described_in_plain_words(user_agent: str, described: str) -> None:
    assert describe_user_agent(user_agent) == described


@pytest.mark.parametrize("missing", [None, "", "   "])
def test_missing_user_agent_is_an_unknown_browser(missing: str | None) -> None:
    assert describe_user_agent(missing) == "Unknown browser"


def test_long_headers_are_cut_before_parsing_and_caching(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []
    real_parse = user_agents.parse

    def recording_parse(user_agent: str) -> object:
        parsed.append(user_agent)
        return real_parse(user_agent)

    monkeypatch.setattr(user_agents, "parse", recording_parse)
    user_agents._describe.cache_clear()
    assert describe_user_agent(FIREFOX_WINDOWS + " x" * 5000) == "Firefox 131 on Windows"
    assert [len(user_agent) for user_agent in parsed] == [user_agents.MAX_USER_AGENT_LENGTH]


def test_repeated_user_agents_are_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []
    real_parse = user_agents.parse

    def recording_parse(user_agent: str) -> object:
        parsed.append(user_agent)
        return real_parse(user_agent)

    monkeypatch.setattr(user_agents, "parse", recording_parse)
    user_agents._describe.cache_clear()  # start from an empty cache (earlier tests fill it)
    descriptions = {describe_user_agent(SAFARI_IPHONE) for _ in range(3)}
    assert len(descriptions) == 1
    assert parsed == [SAFARI_IPHONE]
