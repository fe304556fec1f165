"""Runs the unit tests of the repository's Python example plugin
(plugins/click-cleaner/test_app.py) with the SDK's suite."""

import importlib
import os
import sys
import unittest

_PLUGIN = os.path.join(os.path.dirname(__file__), "..", "..", "..", "plugins", "click-cleaner")


def load_tests(loader, tests, pattern):
    sys.path.insert(0, os.path.abspath(_PLUGIN))
    try:
        module = importlib.import_module("test_app")
    finally:
        sys.path.pop(0)
    tests.addTests(loader.loadTestsFromModule(module))
    return tests
