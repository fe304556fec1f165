"""The aggregator world's adapter, with fakes of the generated bindings."""

import json
import unittest

import streamhost
from streamhost import _adapter

from . import fakes


class Sum(streamhost.Aggregator):
    """Sums ``n``, remembering the order of the values; refuses a missing n."""

    def init(self, config):
        self.config = config

    def create(self):
        return {"sum": 0, "seen": []}

    def add(self, state, event):
        n = event.json["n"]
        return {"sum": state["sum"] + n, "seen": state["seen"] + [n]}

    def merge(self, a, b):
        return {"sum": a["sum"] + b["sum"], "seen": a["seen"] + b["seen"]}

    def finish(self, state):
        if state["sum"] < 0:
            raise streamhost.PluginError("negative")
        return state["sum"]

    def finish_partial(self, state):
        return {"partial": state["sum"]}


def world(plugin=None):
    return _adapter.aggregator_world(plugin or Sum(), fakes.namespace())()


def ev(n):
    return streamhost.Event(None, json.dumps({"n": n}).encode(), 0, [])


def enc(state):
    return json.dumps(state, separators=(",", ":")).encode()


class AggregatorAdapterTest(unittest.TestCase):
    def test_create_is_the_encoded_empty_state(self):
        self.assertEqual(json.loads(world().create()), {"sum": 0, "seen": []})

    def test_add_folds_groups_in_order_and_fails_events_alone(self):
        w = world()
        empty = w.create()
        states = fakes.column([empty, enc({"sum": 10, "seen": [10]}), b"not json", empty])
        events = [ev(1), ev(2), streamhost.Event(None, b"{}", 0, []), ev(3), ev(4), ev(5)]
        out = w.add(states, fakes.pack(events), [0, 1, 1, 0, 2, 7])
        new = fakes.items(out.states)
        self.assertEqual(json.loads(new[0]), {"sum": 4, "seen": [1, 3]})
        self.assertEqual(json.loads(new[1]), {"sum": 12, "seen": [10, 2]})
        self.assertEqual(new[2], b"not json")
        self.assertEqual(new[3], empty, "an untouched group comes back byte for byte")
        self.assertEqual([e.event for e in out.errors], [2, 4, 5])
        self.assertTrue(out.errors[0].message.startswith("KeyError"), out.errors[0].message)
        self.assertTrue(out.errors[1].message.startswith("cannot decode the accumulator"), out.errors[1].message)
        self.assertEqual(out.errors[2].message, "event 5 names no accumulator")

    def test_merge_follows_into_and_fills_empty_outputs(self):
        w = world()
        s = lambda n: enc({"sum": n, "seen": [n]})  # noqa: E731
        out = fakes.items(w.merge(fakes.column([s(1), s(2), s(3)]), [1, 0, 1], 3))
        self.assertEqual([json.loads(o) for o in out], [
            {"sum": 2, "seen": [2]}, {"sum": 4, "seen": [1, 3]}, {"sum": 0, "seen": []},
        ])
        with self.assertRaises(fakes.Err) as raised:
            w.merge(fakes.column([s(1)]), [5], 2)
        self.assertIn("names no output", raised.exception.value)

    def test_finish_gives_json_errors_alone_and_partial(self):
        w = world()
        states = fakes.column([enc({"sum": 7, "seen": []}), enc({"sum": -1, "seen": []})])
        done = w.finish(states, False)
        self.assertEqual(done[0], fakes.Ok(b"7"))
        self.assertEqual(done[1], fakes.Err("negative"))
        self.assertEqual(json.loads(w.finish(states, True)[0].value), {"partial": 7})

    def test_find_plugin_class(self):
        module = type(unittest)("m")
        module.Plugin = Sum
        self.assertIs(_adapter.find_plugin_class(module, "aggregator"), Sum)
        module.Plugin = streamhost.Joiner
        with self.assertRaises(_adapter.BindingError):
            _adapter.find_plugin_class(module, "aggregator")


if __name__ == "__main__":
    unittest.main()
