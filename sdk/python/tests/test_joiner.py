"""The joiner world's adapter, with fakes of the generated bindings."""

import unittest

import streamhost
from streamhost import _adapter

from . import fakes


def event(value, ts=0, key=None, headers=None):
    return streamhost.Event(key, value, ts, headers or [])


class Summary(streamhost.Joiner):
    def init(self, config):
        self.config = config

    def join(self, main, matches):
        if main.value == b"fail":
            raise ValueError("bad main")
        if main.value == b"drop":
            return None
        if main.value == b"two":
            return [main, main]
        parts = ";".join(f"{name}=" + "+".join(e.value.decode() for e in events) for name, events in matches.items())
        return streamhost.Event(main.key, main.value + b"|" + parts.encode(), main.timestamp, main.headers)


def call(world, inputs, cases):
    """Lays ``cases`` ([(main, [(input, event)])]) out as the host does."""
    mains = [m for m, _ in cases]
    matches, match_mains, match_inputs = [], [], []
    for i, (_, pairs) in enumerate(cases):
        for input_name, e in sorted(pairs, key=lambda p: inputs.index(p[0])):
            matches.append(e)
            match_mains.append(i)
            match_inputs.append(inputs.index(input_name))
    out = world.join(inputs, fakes.pack(mains), fakes.pack(matches), match_mains, match_inputs)
    return fakes.unpack(out, len(mains))


class JoinerWorldTest(unittest.TestCase):
    def setUp(self):
        self.plugin = Summary()
        self.world = _adapter.joiner_world(self.plugin, fakes.namespace())()

    def test_each_main_gets_its_matches_by_input(self):
        cases = [
            (event(b"a", ts=1, key=b"k"), [("likes", event(b"l1")), ("clicks", event(b"c1")), ("clicks", event(b"c2"))]),
            (event(b"b", ts=2), []),
            (event(b"fail"), [("clicks", event(b"c3"))]),
            (event(b"drop"), []),
            (event(b"two"), []),
            (event(b"c", headers=[streamhost.Header("h", b"v")]), [("clicks", event(b"c4", headers=[streamhost.Header("x", b"y")]))]),
        ]
        out = call(self.world, ["clicks", "likes"], cases)
        self.assertEqual([e.value for e in out[0]], [b"a|clicks=c1+c2;likes=l1"])
        self.assertEqual((out[0][0].key, out[0][0].timestamp), (b"k", 1))
        self.assertEqual([e.value for e in out[1]], [b"b|clicks=;likes="])
        self.assertIsInstance(out[2], fakes.Err)
        self.assertIn("bad main", out[2].value)
        self.assertEqual(out[3], [])
        self.assertEqual(len(out[4]), 2)
        self.assertEqual([e.value for e in out[5]], [b"c|clicks=c4;likes="])

    def test_init_gets_the_config(self):
        self.world.init('{"a": 1}')
        self.assertEqual(self.plugin.config, {"a": 1})

    def test_batch_events_decode_columns(self):
        events = [event(b"x", ts=5, key=b""), event(b"", ts=-1, headers=[streamhost.Header("h", b"1")])]
        self.assertEqual(_adapter.batch_events(fakes.pack(events)), events)

    def test_find_plugin_class_knows_joiners(self):
        import types
        module = types.ModuleType("app")
        module.Plugin = Summary
        self.assertIs(_adapter.find_plugin_class(module, "joiner"), Summary)
        with self.assertRaises(_adapter.BindingError):
            _adapter.find_plugin_class(module, "transform")
