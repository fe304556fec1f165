"""Example ETL plugin in Python: cleans raw click log lines.

Normalises ``device`` and ``click_type`` (trimmed, lowercase), parses ``ts``
(int, numeric string or ISO 8601; seconds become ms), drops bot traffic and
clicks with a negative ``dwell_ms`` (a clock glitch on the device), and
rejects records without ``user_id`` or ``item_id``. The output is compact
JSON without the ``user_agent``; the event's timestamp becomes ``ts``.

Config (optional): ``{"max_dwell_ms": 3600000}`` caps ``dwell_ms``.
"""

from datetime import datetime, timezone

import streamhost

# Substrings of a crawler's user agent (matched lowercase). Plain `in`
# tests: a case-insensitive regex costs ten times as much per record.
_BOT_MARKERS = ("bot", "spider", "crawl")
# Integers below this are seconds, not milliseconds (1e11 ms is 1973).
_SECONDS_LIMIT = 100_000_000_000


def parse_ts(raw):
    """Milliseconds since the epoch from an int, float, numeric string or
    ISO 8601 string; ValueError otherwise."""
    if isinstance(raw, bool) or raw is None:
        raise ValueError(f"unparseable ts {raw!r}")
    if isinstance(raw, str):
        text = raw.strip()
        if text.isdigit():
            raw = int(text)
        else:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                raise ValueError(f"unparseable ts {raw!r}") from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            return int(parsed.timestamp() * 1000)
    if isinstance(raw, (int, float)):
        ts = int(raw)
        if ts < 0:
            raise ValueError(f"negative ts {raw!r}")
        return ts * 1000 if ts < _SECONDS_LIMIT else ts
    raise ValueError(f"unparseable ts {raw!r}")


def _required(record, field):
    value = record.get(field)
    if not isinstance(value, str) or not value.strip():
        raise streamhost.PluginError(f"missing or empty {field}")
    return value.strip()


def _lower(value):
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value.lower() if value else None


def is_bot_agent(agent):
    """True when a user agent names a crawler (bot, spider, crawl; any case)."""
    agent = agent.lower()
    return any(marker in agent for marker in _BOT_MARKERS)


def clean_click(record, max_dwell_ms=None):
    """The cleaned click of a parsed record, or None to drop it."""
    if not isinstance(record, dict):
        raise streamhost.PluginError("a click must be a JSON object")
    kind = record.get("event", "click")
    if kind != "click":
        raise streamhost.PluginError(f"not a click: event {kind!r}")
    agent = record.get("user_agent")
    if record.get("is_bot") is True or (isinstance(agent, str) and is_bot_agent(agent)):
        return None
    dwell = record.get("dwell_ms")
    if isinstance(dwell, (int, float)) and not isinstance(dwell, bool):
        if dwell < 0:
            return None
        dwell = int(dwell) if max_dwell_ms is None else min(int(dwell), max_dwell_ms)
    else:
        dwell = None
    if "ts" not in record:
        raise streamhost.PluginError("missing ts")
    out = {"event": "click", "ts": parse_ts(record["ts"])}
    request_id = record.get("request_id")
    if isinstance(request_id, str) and request_id.strip():
        out["request_id"] = request_id.strip()
    out["user_id"] = _required(record, "user_id")
    out["item_id"] = _required(record, "item_id")
    for field in ("device", "click_type"):
        value = _lower(record.get(field))
        if value is not None:
            out[field] = value
    if dwell is not None:
        out["dwell_ms"] = dwell
    return out


class Plugin(streamhost.Transform):
    def init(self, config):
        self.max_dwell_ms = (config or {}).get("max_dwell_ms")

    def process_event(self, event):
        cleaned = clean_click(event.json, self.max_dwell_ms)
        if cleaned is None:
            return None
        event.timestamp = cleaned["ts"]
        return event.set_json(cleaned)
