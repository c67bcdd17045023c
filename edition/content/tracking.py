"""`tracking:` in a campaign: whether the links of an edition count clicks, and how much
they say about who clicked.

```yaml
tracking:
  base_url: https://go.acme.example      # where `edition web` answers /c/<token>
  level: aggregate                       # or customer: the click names the customer too
```

`aggregate` (the default) is privacy by default: a click names the campaign, mailing,
version and module, never the person, so the tokens are shared by every customer of a
version. `customer` adds the customer id (sealed in the token, not readable in the URL).
No open pixels: Apple Mail's privacy protection fetches every image, so opens mean nothing.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import field_validator

from edition.content.campaign_values import PASSWORD_IN_URL, Strict
from edition.content.errors_at_lines import fail

LEVELS = ("aggregate", "customer")


class Tracking(Strict):
    """`tracking: {base_url: URL, level: aggregate | customer}`."""

    base_url: str
    level: str = "aggregate"

    @field_validator("base_url", mode="before")
    @classmethod
    def _base_url(cls, value: Any) -> str:
        if not isinstance(value, str) or not value.startswith(("https://", "http://")):
            raise fail("tracking.base_url must be an http(s) URL, e.g. https://go.acme.example")
        parts = urlsplit(value)
        if not parts.hostname or parts.query or parts.fragment:
            raise fail("tracking.base_url must be a host and an optional path, without "
                       "?query or #fragment (edition adds /c/<token>)")
        if PASSWORD_IN_URL.match(value):
            raise fail("tracking.base_url must not hold a user or password")
        return value.rstrip("/")

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> str:
        if value not in LEVELS:
            raise fail(f"tracking.level {value!r} must be aggregate or customer")
        return str(value)


__all__ = ["LEVELS", "Tracking"]
