"""Unit tests of the click cleaner on plain CPython:
``PYTHONPATH=sdk/python python3 -m unittest discover -s plugins/click-cleaner -p 'test_*.py'``."""

import json
import unittest

import streamhost
from app import Plugin, clean_click, parse_ts

GOOD = {
    "event": "click", "ts": 1700000000123, "request_id": "r-1", "user_id": "u-1", "item_id": "i-2",
    "device": " Android ", "click_type": "TAP", "dwell_ms": 5300, "user_agent": "Mozilla/5.0",
}


class CleanClickTest(unittest.TestCase):
    def test_normalises(self):
        self.assertEqual(
            clean_click(dict(GOOD)),
            {"event": "click", "ts": 1700000000123, "request_id": "r-1", "user_id": "u-1", "item_id": "i-2",
             "device": "android", "click_type": "tap", "dwell_ms": 5300},
        )

    def test_timestamps(self):
        self.assertEqual(parse_ts("1700000000123"), 1700000000123)
        self.assertEqual(parse_ts(1700000000), 1700000000000)
        self.assertEqual(parse_ts("2023-11-14T22:13:20.5Z"), 1700000000500)
        for bad in ("soon", None, True, -1, {}):
            with self.assertRaises(ValueError):
                parse_ts(bad)

    def test_drops_bots_and_negative_dwell(self):
        self.assertIsNone(clean_click(dict(GOOD, user_agent="Googlebot/2.1")))
        self.assertIsNone(clean_click(dict(GOOD, is_bot=True)))
        self.assertIsNone(clean_click(dict(GOOD, dwell_ms=-3)))

    def test_rejects_missing_ids_and_other_events(self):
        for record, message in (
            ({k: v for k, v in GOOD.items() if k != "user_id"}, "missing or empty user_id"),
            (dict(GOOD, item_id="  "), "missing or empty item_id"),
            (dict(GOOD, event="impression"), "not a click: event 'impression'"),
            ([], "a click must be a JSON object"),
        ):
            with self.assertRaises(streamhost.PluginError) as cm:
                clean_click(record)
            self.assertEqual(str(cm.exception), message)

    def test_plugin_sets_event_time_and_caps_dwell(self):
        plugin = Plugin()
        plugin.init({"max_dwell_ms": 1000})
        out = plugin.process_event(streamhost.Event(value=json.dumps(GOOD), timestamp=1))
        self.assertEqual(out.timestamp, 1700000000123)
        self.assertEqual(out.json["dwell_ms"], 1000)
        self.assertNotIn(b"user_agent", out.value)


if __name__ == "__main__":
    unittest.main()
