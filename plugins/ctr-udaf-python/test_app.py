"""Unit tests of the smoothed-CTR aggregator on plain CPython:
``PYTHONPATH=sdk/python python3 -m unittest discover -s plugins/ctr-udaf-python -p 'test_*.py'``."""

import json
import unittest

import streamhost
from app import Plugin


def event(obj):
    return streamhost.Event(None, json.dumps(obj).encode(), 0, [])


class SmoothedCtrTest(unittest.TestCase):
    def fold(self, plugin, kinds):
        state = plugin.create()
        for kind in kinds:
            state = plugin.add(state, event({"type": kind}))
        return state

    def test_default_prior(self):
        plugin = Plugin()
        plugin.init(None)
        state = self.fold(plugin, ["click", "view", "impression"])
        self.assertEqual(state, {"clicks": 1, "impressions": 2})
        self.assertAlmostEqual(plugin.finish(state)["ctr"], 2 / 13, places=15)
        self.assertAlmostEqual(plugin.finish(plugin.create())["ctr"], 1 / 11, places=15)

    def test_merge_and_config(self):
        plugin = Plugin()
        plugin.init({"a": 2, "b": 3})
        merged = plugin.merge(self.fold(plugin, ["click"]), self.fold(plugin, ["x", "click"]))
        self.assertEqual(plugin.finish(merged), {"ctr": (2 + 2) / (1 + 2 + 3), "clicks": 2, "impressions": 1})

    def test_bad_input_and_config(self):
        plugin = Plugin()
        plugin.init(None)
        with self.assertRaises(streamhost.PluginError):
            plugin.add(plugin.create(), streamhost.Event(None, b"[1]", 0, []))
        with self.assertRaises(ValueError):
            Plugin().init({"a": -1})
        with self.assertRaises(ValueError):
            Plugin().init({"c": 1})

    def test_state_is_json_round_trip(self):
        plugin = Plugin()
        plugin.init(None)
        state = self.fold(plugin, ["click", "click"])
        self.assertEqual(plugin.decode(plugin.encode(state)), state)


if __name__ == "__main__":
    unittest.main()
