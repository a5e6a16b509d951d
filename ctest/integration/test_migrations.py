#!/usr/bin/env python3
"""mysql/migrate.sh, the schema migration runner, against the stack's real
MariaDB, on databases of the test's own (never the stack's `items`): a v1
database is upgraded in place with every created_at kept (written under
another time zone than UTC); a second run applies nothing; an edited
migration, a gap, an out-of-order state or a stray file is refused before
anything runs; a failing one stops the run naming the file, the line and the
statement; concurrent runners apply each migration once (GET_LOCK); every
write gives a row a new version (its ETag), whoever writes.
"""

import hashlib
import os
import shutil
import subprocess
import tempfile

import stack as harness
from stack import main, run_concurrently

MIGRATE = os.path.join(harness.REPO_ROOT, "mysql", "migrate.sh")
MIGRATIONS = os.path.join(harness.REPO_ROOT, "mysql", "migrations")

# The table of release v1 (mysql/schema.sql at commit fd03663).
V1_TABLE = """CREATE TABLE items (
    id          INT NOT NULL AUTO_INCREMENT,
    name        VARCHAR(255) NOT NULL,
    description TEXT NULL,
    created_at  TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci"""


class MigrationsTest(harness.StackTestCase):
    stack_options = {"workers": 1}
    serial = 0

    def database(self):
        """A new empty database of this test; dropped at the end."""
        MigrationsTest.serial += 1
        name = "mig_%d_%d" % (os.getpid(), MigrationsTest.serial)
        self.stack.sql("CREATE DATABASE %s" % name)
        self.addCleanup(self.stack.sql, "DROP DATABASE IF EXISTS %s" % name)
        return name

    def client(self):
        return ["mariadb", "--no-defaults", "--socket=" + self.stack.mysql_socket(), "-uroot"]

    def migrate(self, database, directory=MIGRATIONS, *extra, client_options=()):
        return subprocess.run(
            [MIGRATE, "--dir", directory, *extra, database, "--"] + self.client()
            + list(client_options),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120,
            check=False)

    def query(self, database, sql):
        return self.stack.sql("SET NAMES utf8mb4; USE %s; %s" % (database, sql))

    def applied(self, database):
        return self.query(database, "SELECT version, name, checksum, applied_at "
                          "FROM schema_migrations ORDER BY version").splitlines()

    def copy_of_migrations(self):
        directory = tempfile.mkdtemp(prefix="items-migrations-")
        self.addCleanup(shutil.rmtree, directory, True)
        for name in os.listdir(MIGRATIONS):
            shutil.copy(os.path.join(MIGRATIONS, name), directory)
        return directory

    def newest(self):
        return max(int(n[:4]) for n in os.listdir(MIGRATIONS) if n.endswith(".sql"))

    def test_v1_database_upgraded_in_place(self):
        db = self.database()
        # Rows written the way v1 did, in a session whose zone is not UTC: a
        # TIMESTAMP stores UTC and the upgrade must keep that instant.
        self.query(db, V1_TABLE + "; SET time_zone = '+05:30'; "
                   "INSERT INTO items (name, description, created_at) VALUES "
                   "('été', NULL, '2030-01-02 08:34:05'), "
                   "('🏆', 'x', '2037-12-31 23:59:59')")
        before = self.query(db, "SET time_zone = '+00:00'; SELECT id, name, "
                            "description, created_at FROM items ORDER BY id")
        # The client's sessions start in another zone: the runner itself must
        # convert in UTC.
        out = self.migrate(db, client_options=["--init-command=SET time_zone = '-07:00'"])
        self.assertEqual(out.returncode, 0, out.stdout)
        self.assertIn("%s at schema version %d" % (db, self.newest()), out.stdout)
        after = self.query(db, "SELECT id, name, description, created_at FROM items "
                           "ORDER BY id")
        self.assertEqual(after, before)
        self.assertIn("2030-01-02 03:04:05", after)
        # Past 2038 now.
        self.query(db, "UPDATE items SET created_at = '2040-06-01 12:00:00' WHERE id = 1")
        self.assertIn("2040-06-01 12:00:00", self.query(db, "SELECT created_at FROM items"))
        versions = [line.split("\t")[0] for line in self.applied(db)]
        self.assertEqual(versions, [str(v) for v in range(1, self.newest() + 1)])

    def test_second_run_applies_nothing(self):
        db = self.database()
        self.assertEqual(self.migrate(db).returncode, 0)
        first = self.applied(db)
        out = self.migrate(db)
        self.assertEqual(out.returncode, 0, out.stdout)
        self.assertIn("nothing to apply", out.stdout)
        self.assertNotIn("applied ", out.stdout)
        self.assertEqual(self.applied(db), first)

    def test_edited_migration_is_refused(self):
        db = self.database()
        self.assertEqual(self.migrate(db).returncode, 0)
        directory = self.copy_of_migrations()
        with open(os.path.join(directory, "0002_created_at_datetime.sql"), "a") as f:
            f.write("-- edited after it ran\n")
        # And a new one, which must not run either.
        with open(os.path.join(directory, "%04d_more.sql" % (self.newest() + 1)), "w") as f:
            f.write("CREATE TABLE more_things (id INT PRIMARY KEY);\n")
        before = self.applied(db)
        out = self.migrate(db, directory)
        self.assertEqual(out.returncode, 1, out.stdout)
        self.assertIn("0002_created_at_datetime.sql was changed after it was applied",
                      out.stdout)
        self.assertEqual(self.applied(db), before)
        self.assertNotIn("more_things", self.query(db, "SHOW TABLES"))

    def test_gap_or_out_of_order_is_refused(self):
        db = self.database()
        directory = self.copy_of_migrations()
        with open(os.path.join(directory, "%04d_later.sql" % (self.newest() + 1)), "w") as f:
            f.write("SELECT 1;\n")
        self.assertEqual(self.migrate(db, directory).returncode, 0)
        # A file gone from the middle: a gap, refused before anything runs.
        os.remove(os.path.join(directory, "0002_created_at_datetime.sql"))
        out = self.migrate(db, directory)
        self.assertEqual(out.returncode, 1, out.stdout)
        self.assertIn("no migration 0002", out.stdout)
        shutil.copy(os.path.join(MIGRATIONS, "0002_created_at_datetime.sql"), directory)
        # A row removed by hand: 0003 pending while a later one is applied.
        self.query(db, "DELETE FROM schema_migrations WHERE version = 3")
        out = self.migrate(db, directory)
        self.assertEqual(out.returncode, 1, out.stdout)
        self.assertIn("0003_row_version.sql is not applied, but a later migration", out.stdout)
        # Anything but NNNN_name.sql in the directory.
        self.query(db, "INSERT INTO schema_migrations (version, name, checksum) SELECT 3, "
                   "'0003_row_version.sql', '%s'" % self.checksum("0003_row_version.sql"))
        open(os.path.join(directory, "0005_next.sql.bak"), "w").close()
        out = self.migrate(db, directory)
        self.assertEqual(out.returncode, 1, out.stdout)
        self.assertIn("holds only NNNN_description.sql files", out.stdout)

    def checksum(self, name):
        with open(os.path.join(MIGRATIONS, name), "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    def test_every_write_gives_a_new_version(self):
        """Rows inserted without a version (SQL, the seed, the release
        before) get distinct random ones; an UPDATE that leaves the version
        as it was (the release before's workers) still changes it."""
        db = self.database()
        self.assertEqual(self.migrate(db).returncode, 0)
        self.query(db, "INSERT INTO items (name) VALUES ('a'), ('b'), ('c')")
        versions = self.query(db, "SELECT version FROM items").split()
        self.assertEqual(len(set(versions)), 3, versions)
        self.assertNotIn("0", versions)
        # v1's statement (fd03663's db.c).
        self.query(db, "UPDATE items SET name = 'v1 write', description = NULL WHERE id = 1")
        after = self.query(db, "SELECT version FROM items WHERE id = 1").strip()
        self.assertNotEqual(after, versions[0])
        # A writer that sets the version keeps its own.
        self.query(db, "UPDATE items SET name = 'v2', version = 12345 WHERE id = 2")
        self.assertEqual(self.query(db, "SELECT version FROM items WHERE id = 2").strip(),
                         "12345")

    def test_seed_items_have_distinct_tags(self):
        """The stack's own database: seeded after the migrations, each item
        has a tag of its own, and one item's tag does not match another."""
        tags = [self.stack.request("GET", "/items/%d" % i).headers.get("etag")
                for i in range(1, 6)]
        self.assertEqual(len(set(tags)), 5, tags)
        r = self.stack.request("GET", "/items/2", headers={"If-None-Match": tags[0]})
        self.assertEqual(r.status, 200, r)

    def test_failing_migration_names_file_line_and_statement(self):
        db = self.database()
        directory = self.copy_of_migrations()
        with open(os.path.join(directory, "%04d_broken.sql" % (self.newest() + 1)), "w") as f:
            f.write("-- adds a column twice\nCREATE TABLE ok_before (id INT PRIMARY KEY);\n\n"
                    "ALTER TABLE items\n    ADD COLUMN twice INT,\n    ADD COLUMN twice INT;\n"
                    "CREATE TABLE never_reached (id INT PRIMARY KEY);\n")
        out = self.migrate(db, directory)
        self.assertEqual(out.returncode, 1, out.stdout)
        self.assertRegex(out.stdout, r"%04d_broken\.sql failed at line 4: Duplicate column name "
                         r"'twice'" % (self.newest() + 1))
        self.assertIn("    ALTER TABLE items\n        ADD COLUMN twice INT,\n"
                      "        ADD COLUMN twice INT;", out.stdout)
        tables = self.query(db, "SHOW TABLES")
        self.assertNotIn("never_reached", tables)
        # The migrations before it stay applied; the broken one is not recorded.
        versions = [line.split("\t")[0] for line in self.applied(db)]
        self.assertEqual(versions, [str(v) for v in range(1, self.newest() + 1)])

    def test_concurrent_runners_apply_each_migration_once(self):
        db = self.database()
        runs = run_concurrently(4, lambda i: self.migrate(db), timeout=120)
        for run in runs:
            self.assertIsInstance(run, subprocess.CompletedProcess, run)
            self.assertEqual(run.returncode, 0, run.stdout)
        appliers = [r for r in runs if "applied 0001_baseline.sql" in r.stdout]
        self.assertEqual(len(appliers), 1, [r.stdout for r in runs])
        self.assertEqual(sum("nothing to apply" in r.stdout for r in runs), 3)
        versions = [line.split("\t")[0] for line in self.applied(db)]
        self.assertEqual(versions, [str(v) for v in range(1, self.newest() + 1)])

    def test_pending_lists_without_applying(self):
        db = self.database()
        out = self.migrate(db, MIGRATIONS, "--pending")
        self.assertEqual(out.returncode, 0, out.stdout)
        self.assertEqual(out.stdout.split(), sorted(
            n for n in os.listdir(MIGRATIONS) if n.endswith(".sql")))
        self.assertEqual(self.query(db, "SHOW TABLES"), "", "--pending created a table")


if __name__ == "__main__":
    main()
