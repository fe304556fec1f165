"""Runs the unit tests of the repository's Python example plugins
(plugins/click-cleaner/test_app.py, plugins/sample-joiner-python/test_app.py,
plugins/ctr-udaf-python/test_app.py)
with the SDK's suite."""

import importlib
import os
import sys
import unittest

_PLUGINS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "plugins")
_EXAMPLES = ("click-cleaner", "sample-joiner-python", "ctr-udaf-python")


def load_tests(loader, tests, pattern):
    for name in _EXAMPLES:
        # Every example has its own `app` and `test_app` modules.
        for module in ("app", "test_app"):
            sys.modules.pop(module, None)
        sys.path.insert(0, os.path.abspath(os.path.join(_PLUGINS, name)))
        try:
            module = importlib.import_module("test_app")
        finally:
            sys.path.pop(0)
        tests.addTests(loader.loadTestsFromModule(module))
    for module in ("app", "test_app"):
        sys.modules.pop(module, None)
    return tests
