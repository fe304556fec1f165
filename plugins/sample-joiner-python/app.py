"""Example joiner plugin in Python: turns an impression and the clicks a
window join matched to it into one training sample.

The same plugin as ``plugins/sample-joiner-rust`` (the host's tests check
that both give the same samples). Output (JSON object, keys sorted):
``request_id``, ``user_id``, ``item_id``, the impression's feature fields
(by default every other field; config ``{"features": [...]}`` picks them),
then ``label`` (1 if any click matched, else 0), ``clicks`` (how many) and
``dwell_ms`` (the sum of the clicks' integer ``dwell_ms``). The sample keeps
the impression's time and key. An impression that is not a JSON object, or
lacks one of the three ids, fails alone (dead-lettered).

Config (optional): ``{"clicks_input": "clicks", "features": ["device", ...]}``.
"""

import json

import streamhost

IDS = ("request_id", "user_id", "item_id")
_S64_MIN, _S64_MAX = -(2**63), 2**63 - 1


def sample(impression, clicks, features=None):
    """The sample (a dict) of the parsed ``impression`` given its parsed
    ``clicks``; ValueError when the impression cannot make one."""
    if not isinstance(impression, dict):
        raise ValueError("the impression is not a JSON object")
    out = {}
    for key in IDS:
        if impression.get(key) is None:
            raise ValueError(f"the impression has no {key}")
        out[key] = impression[key]
    for key in impression if features is None else features:
        if key in impression and key not in out:
            out[key] = impression[key]
    dwell = 0
    for click in clicks:
        d = click.get("dwell_ms") if isinstance(click, dict) else None
        if type(d) is int and _S64_MIN <= d <= _S64_MAX:
            dwell = max(_S64_MIN, min(_S64_MAX, dwell + d))
    out["label"] = 1 if clicks else 0
    out["clicks"] = len(clicks)
    out["dwell_ms"] = dwell
    return out


def encode(obj):
    """Compact JSON with sorted keys, as serde_json writes a map."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _parsed(event):
    try:
        return event.json
    except ValueError:
        return None


class Plugin(streamhost.Joiner):
    def init(self, config):
        config = config or {}
        unknown = set(config) - {"clicks_input", "features"}
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        self.clicks_input = config.get("clicks_input", "clicks")
        self.features = config.get("features")

    def join(self, main, matches):
        if self.clicks_input not in matches:
            raise streamhost.PluginError(
                f"no input named {self.clicks_input!r} among this join's inputs {list(matches)} (config clicks_input)"
            )
        clicks = [_parsed(c) for c in matches[self.clicks_input]]
        record = sample(main.json, clicks, self.features)
        return streamhost.Event(main.key, encode(record), main.timestamp, list(main.headers))
