"""Smoothed click-through rate per group, as a user-defined aggregate: an
event with ``"type": "click"`` is a click, any other an impression, and the
value is ``(clicks + a) / (impressions + a + b)`` with ``a`` and ``b`` from the
plugin's config (``{"a": 1, "b": 10}`` by default): a prior of ``a`` clicks in
``a + b`` impressions. The same plugin as ``plugins/ctr-udaf-rust``."""

import math

import streamhost


class Plugin(streamhost.Aggregator):
    def init(self, config):
        config = config or {}
        unknown = set(config) - {"a", "b"}
        if unknown:
            raise ValueError(f"unknown config fields: {sorted(unknown)} (a, b)")
        self.a = float(config.get("a", 1))
        self.b = float(config.get("b", 10))
        if not (math.isfinite(self.a) and math.isfinite(self.b) and self.a >= 0 and self.b >= 0 and self.a + self.b > 0):
            raise ValueError(f"a and b must be finite, non-negative and not both 0 (got a = {self.a}, b = {self.b})")

    def create(self):
        return {"clicks": 0, "impressions": 0}

    def add(self, state, event):
        record = event.json
        if not isinstance(record, dict):
            raise streamhost.PluginError("expected a JSON object")
        if record.get("type") == "click":
            return {"clicks": state["clicks"] + 1, "impressions": state["impressions"]}
        return {"clicks": state["clicks"], "impressions": state["impressions"] + 1}

    def merge(self, a, b):
        return {"clicks": a["clicks"] + b["clicks"], "impressions": a["impressions"] + b["impressions"]}

    def finish(self, state):
        ctr = (state["clicks"] + self.a) / (state["impressions"] + self.a + self.b)
        return {"ctr": ctr, "clicks": state["clicks"], "impressions": state["impressions"]}
