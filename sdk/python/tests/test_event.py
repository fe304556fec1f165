import unittest

from streamhost import Event, Header



class NativeEventTest(unittest.TestCase):
    def test_defaults_and_text_values_are_encoded(self):
        e = Event(value='{"a":"é"}', key="k")
        self.assertEqual((e.key, e.value, e.timestamp, e.headers), (b"k", '{"a":"é"}'.encode(), 0, []))
        self.assertEqual(e.text, '{"a":"é"}')

    def test_json_is_parsed_once_and_follows_value_changes(self):
        e = Event(value=b'{"a":1}')
        first = e.json
        self.assertIs(e.json, first)
        e.value = b'{"a":2}'
        self.assertEqual(e.json, {"a": 2})
        with self.assertRaises(ValueError):
            Event(value=b"{nope").json
        with self.assertRaisesRegex(ValueError, "Extra data"):
            Event(value=b'{"a":1} x').json
        with self.assertRaises(ValueError):
            Event(value=b'{"a":"\xff"}').json
        self.assertEqual(Event(value=b' \n {"a":[1]} \n').json, {"a": [1]})

    def test_set_json_writes_compact_utf8(self):
        e = Event(value=b"{}", timestamp=7)
        self.assertIs(e.set_json({"b": [1, 2], "s": "ü"}), e)
        self.assertEqual(e.value, '{"b":[1,2],"s":"ü"}'.encode())
        self.assertEqual(e.json, {"b": [1, 2], "s": "ü"})

    def test_with_json_keeps_key_time_and_a_copy_of_headers(self):
        e = Event(key=b"k", value=b"{}", timestamp=5, headers=[Header("h", b"1")])
        f = e.with_json({"x": 1})
        self.assertEqual((f.key, f.value, f.timestamp, f.headers), (b"k", b'{"x":1}', 5, [Header("h", b"1")]))
        f.set_header("other", "2")
        self.assertEqual(len(e.headers), 1)
        self.assertEqual(Event.from_json([1], timestamp=3), Event(None, b"[1]", 3, []))

    def test_headers(self):
        e = Event(value=b"")
        self.assertIsNone(e.header("h"))
        e.set_header("h", "v1").set_header("h", b"v2")
        self.assertEqual(e.headers, [Header("h", b"v2")])
        self.assertEqual(e.header("h"), b"v2")


class SlotsTest(unittest.TestCase):
    def test_events_are_slotted_and_the_json_cache_is_not_a_field(self):
        e = Event(None, b'{"a":1}', 9, [])
        self.assertEqual(e.json, {"a": 1})
        self.assertFalse(hasattr(e, "__dict__"))
        self.assertEqual(e, Event(None, b'{"a":1}', 9, []))


if __name__ == "__main__":
    unittest.main()
