"""Unit tests of the sample joiner on plain CPython:
``PYTHONPATH=sdk/python python3 -m unittest discover -s plugins/sample-joiner-python -p 'test_*.py'``."""

import json
import unittest

import streamhost
from app import Plugin, sample

IMP = {"request_id": "r1", "user_id": "u1", "item_id": "i1", "device": "ios", "position": 3}


def event(obj, ts=0):
    return streamhost.Event(None, json.dumps(obj).encode(), ts, [])


class SampleJoinerTest(unittest.TestCase):
    def setUp(self):
        self.plugin = Plugin()
        self.plugin.init(None)

    def test_labels_counts_and_sums_dwell(self):
        out = self.plugin.join(event(IMP, 10), {"clicks": [event({"dwell_ms": 100}), event({"dwell_ms": 50})]})
        self.assertEqual(out.timestamp, 10)
        self.assertEqual(json.loads(out.value), dict(IMP, label=1, clicks=2, dwell_ms=150))
        self.assertEqual(out.value, b'{"clicks":2,"device":"ios","dwell_ms":150,"item_id":"i1","label":1,'
                                    b'"position":3,"request_id":"r1","user_id":"u1"}')

    def test_no_click_is_label_zero(self):
        out = self.plugin.join(event(IMP), {"clicks": []})
        self.assertEqual(json.loads(out.value), dict(IMP, label=0, clicks=0, dwell_ms=0))

    def test_missing_id_fails(self):
        with self.assertRaisesRegex(ValueError, "request_id"):
            self.plugin.join(event({"user_id": "u"}), {"clicks": []})

    def test_features_pick_fields(self):
        self.assertEqual(
            sample(IMP, [], ["device", "missing"]),
            {"request_id": "r1", "user_id": "u1", "item_id": "i1", "device": "ios", "label": 0, "clicks": 0, "dwell_ms": 0},
        )

    def test_unknown_clicks_input_fails(self):
        with self.assertRaises(streamhost.PluginError):
            self.plugin.join(event(IMP), {"click": []})
