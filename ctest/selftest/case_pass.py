"""A test file for run.py (ctest/selftest): 2 tests pass, 1 is skipped."""

import unittest


class Case(unittest.TestCase):
    def test_one(self):
        self.assertTrue(True)

    def test_two(self):
        self.assertTrue(True)

    @unittest.skip("skipped on purpose")
    def test_skipped(self):
        self.fail("never runs")


if __name__ == "__main__":
    unittest.main()
