import types
import unittest
from typing import Optional

import streamhost
from streamhost import _adapter, log

from . import fakes


def event(value, ts=0, key=None, headers=None):
    return streamhost.Event(key, value, ts, headers or [])


class Upper(streamhost.Transform):
    def init(self, config):
        self.config = config

    def process_event(self, event):
        kind = event.json.get("kind")
        if kind == "drop":
            return None
        if kind == "split":
            return [event.with_json({"part": i}) for i in range(3)]
        if kind == "fail":
            raise ValueError("bad record")
        if kind == "reject":
            raise streamhost.PluginError("rejected on purpose")
        if kind == "dict":
            return {"not": "an event"}
        if kind == "native":
            return streamhost.Event(value="from a str", timestamp=4, headers=[streamhost.Header("h", "v")])
        if kind == "bad-ts":
            event.timestamp = 2**64
            return event
        if kind == "text-value":
            event.value = "text"
            return event
        return event


class TransformWorldTest(unittest.TestCase):
    def setUp(self):
        self.plugin = Upper()
        self.world = _adapter.transform_world(self.plugin, fakes.namespace())()

    def through(self, events, world=None):
        out = (world or self.world).process(fakes.pack(events))
        self.assertIsInstance(out, fakes.TransformOutput)
        return fakes.unpack(out, len(events))

    def test_each_event_is_accounted_for_in_order(self):
        kinds = ["keep", "drop", "split", "fail", "reject", "keep"]
        batch = [event(f'{{"kind":"{k}"}}'.encode(), ts=i) for i, k in enumerate(kinds)]
        out = self.through(batch)
        self.assertEqual(out[0], [batch[0]])
        self.assertEqual(out[1], [])
        self.assertEqual([e.value for e in out[2]], [b'{"part":0}', b'{"part":1}', b'{"part":2}'])
        self.assertTrue(all(e.timestamp == 2 for e in out[2]))
        self.assertIsInstance(out[3], fakes.Err)
        self.assertRegex(out[3].value, r"^ValueError: bad record \(test_adapter\.py:\d+\)$")
        self.assertEqual(out[4], fakes.Err("rejected on purpose"))
        self.assertEqual(out[5], [batch[5]])

    def test_keys_headers_and_timestamps_cross_both_ways(self):
        batch = [
            event(b'{"kind":"keep"}', ts=-3, key=b"k1", headers=[streamhost.Header("a", b"1"), streamhost.Header("b", b"")]),
            event(b'{"kind":"keep"}', ts=2**63 - 1),
            event(b'{"kind":"keep"}', ts=0, key=b""),
        ]
        seen = []

        class Spy(streamhost.Transform):
            def process_event(self, e):
                seen.append((e.key, e.timestamp, [(h.name, h.value) for h in e.headers]))
                return e

        out = self.through(batch, _adapter.transform_world(Spy(), fakes.namespace())())
        self.assertEqual(seen, [(b"k1", -3, [("a", b"1"), ("b", b"")]), (None, 2**63 - 1, []), (b"", 0, [])])
        self.assertEqual([o[0] for o in out], batch)
        self.assertEqual(out[2][0].key, b"", "an empty key stays a key")

    def test_wrong_results_fail_their_event_only(self):
        out = self.through([event(b'{"kind":"dict"}'), event(b'{"kind":"bad-ts"}'), event(b"{}")])
        self.assertIn("process_event returned dict", out[0].value)
        self.assertIn("timestamp must be a 64-bit int", out[1].value)
        self.assertEqual(len(out[2]), 1)

    def test_str_fields_are_encoded(self):
        out = self.through([event(b'{"kind":"native"}'), event(b'{"kind":"text-value"}')])
        native = out[0][0]
        self.assertEqual((native.value, native.timestamp), (b"from a str", 4))
        self.assertEqual(native.headers, [streamhost.Header("h", b"v")])
        self.assertEqual(out[1][0].value, b"text")

    def test_invalid_json_is_that_events_error(self):
        out = self.through([event(b"{oops"), event(b"{}")])
        self.assertRegex(out[0].value, r"^JSONDecodeError: .* \(test_adapter\.py:\d+\)$")
        self.assertEqual(len(out[1]), 1)

    def test_an_empty_batch_gives_empty_columns(self):
        out = self.world.process(fakes.pack([]))
        self.assertEqual((out.events.values.data, out.events.values.ends, out.origins, out.errors), (b"", [], [], []))

    def test_init_parses_config(self):
        self.world.init('{"a": [1]}')
        self.assertEqual(self.plugin.config, {"a": [1]})
        self.world.init("null")
        self.assertIsNone(self.plugin.config)
        self.world.init("")
        self.assertIsNone(self.plugin.config)
        with self.assertRaises(fakes.Err) as cm:
            self.world.init("{")
        self.assertTrue(cm.exception.value.startswith("invalid plugin config"))

    def test_init_failure_is_reported(self):
        class Picky(streamhost.Transform):
            def init(self, config):
                raise streamhost.PluginError("need a threshold")

        world = _adapter.transform_world(Picky(), fakes.namespace())()
        with self.assertRaises(fakes.Err) as cm:
            world.init("{}")
        self.assertEqual(cm.exception.value, "need a threshold")

    def test_a_transform_without_process_event_fails_each_event(self):
        world = _adapter.transform_world(streamhost.Transform(), fakes.namespace())()
        out = self.through([event(b"{}")], world)
        self.assertIn("NotImplementedError", out[0].value)


class FindPluginClassTest(unittest.TestCase):
    def module(self, **members):
        m = types.ModuleType("app")
        for name, value in members.items():
            if isinstance(value, type):
                value.__module__ = "app"
            setattr(m, name, value)
        return m

    def test_plugin_attribute_or_single_subclass(self):
        class Mine(streamhost.Transform):
            pass

        self.assertIs(_adapter.find_plugin_class(self.module(Plugin=Mine), "transform"), Mine)
        self.assertIs(_adapter.find_plugin_class(self.module(Mine=Mine, Transform=streamhost.Transform), "transform"), Mine)

    def test_clear_errors(self):
        class A(streamhost.Transform):
            pass

        class B(streamhost.Transform):
            pass

        with self.assertRaisesRegex(_adapter.BindingError, "found A, B"):
            _adapter.find_plugin_class(self.module(A=A, B=B), "transform")
        with self.assertRaisesRegex(_adapter.BindingError, "found none"):
            _adapter.find_plugin_class(self.module(), "udf")
        with self.assertRaisesRegex(_adapter.BindingError, "must subclass streamhost.Udf"):
            _adapter.find_plugin_class(self.module(Plugin=A), "udf")


class Funcs(streamhost.Udf):
    @streamhost.function
    def domain(self, url: str) -> Optional[str]:
        return url.split("/")[2] if "//" in url else None

    @streamhost.function(name="scale")
    def scale_by(self, x: float, factor: int) -> float:
        return x * factor

    @streamhost.function
    def echo(self, v):
        return v

    @streamhost.function
    def lies(self) -> str:
        return 5

    @streamhost.function
    def huge(self) -> int:
        return 2**70

    def not_exported(self):
        pass


class UdfWorldTest(unittest.TestCase):
    def setUp(self):
        self.world = _adapter.udf_world(Funcs(), fakes.namespace())()
        self.S = fakes

    def test_signatures_come_from_type_hints(self):
        sigs = {s.name: s for s in self.world.functions()}
        T = fakes.ScalarType
        self.assertEqual(sorted(sigs), ["domain", "echo", "huge", "lies", "scale"])
        self.assertEqual(sigs["domain"], fakes.FunctionSignature("domain", [T.STR], T.STR))
        self.assertEqual(sigs["scale"], fakes.FunctionSignature("scale", [T.FLOAT, T.INT], T.FLOAT))
        self.assertEqual(sigs["echo"], fakes.FunctionSignature("echo", [T.ANY], T.ANY))

    def test_rows_fail_alone(self):
        S = fakes
        out = self.world.call("domain", [
            [S.Scalar_Str("https://a.io/x")], [S.Scalar_Str("nohost")], [S.Scalar_Int(3)], [], [S.Scalar_Null()],
        ])
        self.assertEqual(out[0], S.Ok(S.Scalar_Str("a.io")))
        self.assertEqual(out[1], S.Ok(S.Scalar_Null()))
        self.assertEqual(out[2], S.Err("argument 1: expected str, got int"))
        self.assertEqual(out[3], S.Err("expected 1 argument(s), got 0"))
        self.assertTrue(out[4].value.startswith("TypeError: "), out[4])  # null arrives as None

    def test_ints_widen_to_float_and_results_are_checked(self):
        S = fakes
        self.assertEqual(self.world.call("scale", [[S.Scalar_Int(2), S.Scalar_Int(3)]]), [S.Ok(S.Scalar_Float(6.0))])
        self.assertEqual(self.world.call("lies", [[]]), [S.Err("declared result str, returned int")])
        self.assertEqual(self.world.call("huge", [[]]), [S.Err("int result out of the 64-bit range")])
        echo = self.world.call("echo", [[S.Scalar_Boolean(True)], [S.Scalar_Bytes(b"x")], [S.Scalar_Float(1.5)]])
        self.assertEqual(echo, [S.Ok(S.Scalar_Boolean(True)), S.Ok(S.Scalar_Bytes(b"x")), S.Ok(S.Scalar_Float(1.5))])

    def test_unknown_function(self):
        self.assertEqual(self.world.call("nope", [[], []]), [fakes.Err("unknown function 'nope'")] * 2)
        self.assertEqual(self.world.call("not_exported", [[]]), [fakes.Err("unknown function 'not_exported'")])


class LogTest(unittest.TestCase):
    def tearDown(self):
        log.set_sink(log._stderr_sink)

    def test_fields_are_stringified(self):
        lines = []
        log.set_sink(lambda level, message, fields: lines.append((level, message, fields)))
        log.warn("dropped", reason="bot", count=3)
        log.info(42)
        self.assertEqual(lines, [("warn", "dropped", [("reason", "bot"), ("count", "3")]), ("info", "42", [])])


if __name__ == "__main__":
    unittest.main()
