#!/usr/bin/env python3
"""docs/api.md "Pagination": keyset pagination, "a page costs the same
wherever it starts". Checked as a count, not a time: the rows MariaDB reads
(the server's Handler_read_* counters) to answer one page deep in a large
table are about the same as for the first page, and a small multiple of
the page size. An OFFSET-style query would read every row before the page.

Nothing else talks to this stack's database while the counters are read;
the cost of reading them is measured and taken off.
"""

import re
import sys

import stack as harness
from stack import main, run_concurrently

ROWS = 20000
LIMIT = 10
DEEP_AFTER = 19900
REPEAT = 3          # the smallest of REPEAT measurements counts


class KeysetCostTest(harness.StackTestCase):
    stack_options = {"workers": 2}

    def handler_reads(self):
        out = self.stack.sql("SHOW GLOBAL STATUS LIKE 'Handler_read%'")
        counters = dict(line.split("\t") for line in out.splitlines())
        self.assertIn("Handler_read_next", counters)
        self.assertIn("Handler_read_key", counters)
        self.assertIn("Handler_read_rnd_next", counters)
        return sum(int(v) for v in counters.values())

    def reads_around(self, action):
        """Rows read by the server during action(), less the cost of reading
        the counters themselves; the smallest of REPEAT tries."""
        costs = []
        for _ in range(REPEAT):
            # A result from the query cache (mysql/my.cnf) reads no row:
            # every try runs the statement.
            self.stack.sql("RESET QUERY CACHE")
            before = self.handler_reads()
            action()
            costs.append(self.handler_reads() - before)
        return min(costs) - self.overhead

    def page(self, after):
        r = self.stack.request("GET", "/items?after=%d&limit=%d"
                               % (after, LIMIT))
        items = self.assertJSON(r, 200)
        self.assertEqual([i["id"] for i in items],
                         list(range(after + 1, after + 1 + LIMIT)), r)
        self.assertRegex(r.headers.get("link", ""),
                         re.escape("</items?after=%d&limit=%d>"
                                   % (after + LIMIT, LIMIT)))

    def test_deep_page_reads_no_more_rows_than_the_first(self):
        """GET /items?after=19900&limit=10 over ~20,000 rows makes the server
        read about as many rows as after=0: at most 3 x limit each, the deep
        page at most twice the first. A self-check first: an OFFSET query
        to the same page is seen to read the ~19,900 rows before it, so the
        counters would show a scan."""
        self.stack.sql("INSERT INTO items (name) SELECT CONCAT('k', seq) "
                       "FROM seq_1_to_%d" % ROWS)
        # The seed's ids and these are consecutive from 1 (one statement,
        # nothing else writing), so a page's ids are known in advance.
        low, high, count = map(int, self.stack.sql(
            "SELECT MIN(id), MAX(id), COUNT(*) FROM items").split())
        self.assertEqual((low, high), (1, count))
        self.assertGreater(count, DEEP_AFTER + LIMIT)
        # Every worker connected and its statements prepared.
        for _ in range(5):
            for r in run_concurrently(4, lambda i: self.stack.request(
                    "GET", "/items?limit=%d" % LIMIT)):
                self.assertEqual(getattr(r, "status", r), 200)

        self.overhead = 0
        self.overhead = self.reads_around(lambda: None)
        scan = self.reads_around(lambda: self.stack.sql(
            "SELECT id FROM items ORDER BY id LIMIT %d, %d"
            % (DEEP_AFTER, LIMIT)))
        shallow = self.reads_around(lambda: self.page(0))
        deep = self.reads_around(lambda: self.page(DEEP_AFTER))
        summary = ("rows read: counters %d, offset scan %d, after=0 %d, "
                   "after=%d %d" % (self.overhead, scan, shallow,
                                    DEEP_AFTER, deep))
        self.assertGreaterEqual(scan, DEEP_AFTER, summary)
        self.assertGreaterEqual(shallow, LIMIT, summary)
        self.assertLessEqual(shallow, 3 * LIMIT, summary)
        self.assertLessEqual(deep, 3 * LIMIT, summary)
        self.assertLessEqual(deep, 2 * shallow, summary)
        sys.stderr.write("\n%s\n" % summary)


if __name__ == "__main__":
    main()
