#!/usr/bin/env python3
"""Every text-protocol method of pymemcache's Client, against a live server.

usage: python3 tests/clients/pymemcache_suite.py --server HOST:PORT [unittest options]

The server must be started without -A (shutdown disabled) and with the default item size
limit or a larger one; the suite owns it while it runs (it flushes it before every test and
compares statistics counters before and after).

Each test asserts what memcached 1.6 answers, so the suite passes against memcached itself
and is meant to pass unchanged against any server claiming to be a drop-in replacement.
"""

import argparse
import re
import socket
import sys
import time
import unittest

from pymemcache import exceptions
from pymemcache.client.base import Client

SERVER = ("127.0.0.1", 11211)


def client(**options):
    """A client that waits for replies unless told otherwise (pymemcache's default is noreply)."""
    options.setdefault("default_noreply", False)
    return Client(SERVER, connect_timeout=5, timeout=10, **options)


class ServerTest(unittest.TestCase):
    def setUp(self):
        self.mc = client()
        self.assertTrue(self.mc.flush_all())

    def tearDown(self):
        self.mc.close()

    def counters(self):
        return self.mc.stats()


class Storage(ServerTest):
    def test_set_and_get(self):
        self.assertIs(self.mc.set("greeting", b"hello"), True)
        self.assertEqual(self.mc.get("greeting"), b"hello")
        self.assertIs(self.mc.set("greeting", b"bye"), True)
        self.assertEqual(self.mc.get("greeting"), b"bye")
        self.assertIsNone(self.mc.get("absent"))
        self.assertEqual(self.mc.get("absent", default=b"fallback"), b"fallback")

    def test_flags_are_stored_and_returned(self):
        self.assertTrue(self.mc.set("flagged", b"v", flags=4294967295))
        self.assertTrue(self.mc.set("plain", b"w"))
        reply = self.mc.raw_command("get flagged plain", end_tokens=b"END\r\n")
        self.assertEqual(reply, b"VALUE flagged 4294967295 1\r\nv\r\nVALUE plain 0 1\r\nw\r\n")

    def test_empty_value(self):
        self.assertTrue(self.mc.set("empty", b""))
        self.assertEqual(self.mc.get("empty"), b"")
        self.assertEqual(self.mc.gets("empty")[0], b"")

    def test_set_many_and_get_many(self):
        values = {"k%d" % i: b"value-%d" % i for i in range(50)}
        self.assertEqual(self.mc.set_many(values), [])
        self.assertEqual(self.mc.get_many(list(values) + ["missing"]), values)
        self.assertEqual(self.mc.get_many([]), {})

    def test_multi_aliases(self):
        values = {"a": b"1", "b": b"2", "c": b"3"}
        self.assertEqual(self.mc.set_multi(values), [])
        self.assertEqual(self.mc.get_multi(["a", "b", "c", "d"]), values)
        self.assertTrue(self.mc.delete_multi(["a", "b"]))
        self.assertEqual(self.mc.get_multi(["a", "b", "c"]), {"c": b"3"})

    def test_add_only_stores_new_keys(self):
        self.assertIs(self.mc.add("fresh", b"first"), True)
        self.assertIs(self.mc.add("fresh", b"second"), False)
        self.assertEqual(self.mc.get("fresh"), b"first")

    def test_replace_only_stores_existing_keys(self):
        self.assertIs(self.mc.replace("nobody", b"x"), False)
        self.assertIsNone(self.mc.get("nobody"))
        self.mc.set("somebody", b"old")
        self.assertIs(self.mc.replace("somebody", b"new"), True)
        self.assertEqual(self.mc.get("somebody"), b"new")

    def test_append_and_prepend(self):
        self.assertIs(self.mc.append("missing", b"tail"), False)
        self.assertIs(self.mc.prepend("missing", b"head"), False)
        self.assertIsNone(self.mc.get("missing"))
        self.mc.set("middle", b"-body-", flags=7)
        self.assertIs(self.mc.append("middle", b"tail"), True)
        self.assertIs(self.mc.prepend("middle", b"head"), True)
        self.assertEqual(self.mc.get("middle"), b"head-body-tail")
        # Appending keeps the item's flags; the ones sent with append are ignored.
        reply = self.mc.raw_command("get middle", end_tokens=b"END\r\n")
        self.assertEqual(reply, b"VALUE middle 7 14\r\nhead-body-tail\r\n")

    def test_binary_values_round_trip(self):
        every_byte = bytes(range(256)) * 4
        tricky = b"\r\nEND\r\nVALUE x 0 1\r\n\x00\xff"
        self.mc.set("bytes", every_byte)
        self.mc.set("tricky", tricky)
        self.assertEqual(self.mc.get("bytes"), every_byte)
        self.assertEqual(self.mc.get_many(["bytes", "tricky"]), {"bytes": every_byte, "tricky": tricky})

    def test_large_values(self):
        limit = self.mc.stats("settings")[b"item_size_max"]
        self.assertGreaterEqual(limit, 1024 * 1024)
        for size in (100 * 1024, 512 * 1024, limit - 1024):
            value = bytes((i * 7 + size) % 251 for i in range(size))
            self.assertTrue(self.mc.set("large", value), size)
            self.assertEqual(self.mc.get("large"), value, size)
        self.mc.set("large", b"small")
        with self.assertRaises(exceptions.MemcacheServerError) as raised:
            self.mc.set("large", b"x" * (limit + 1))
        self.assertIn(b"too large", raised.exception.args[0])
        # memcached drops the old value when a set of the same key fails for size, so no
        # stale data survives; the connection stays usable.
        self.assertIsNone(self.mc.get("large"))
        self.assertTrue(self.mc.set("after", b"ok"))
        self.assertEqual(self.mc.get("after"), b"ok")


class CompareAndSwap(ServerTest):
    def test_gets_and_cas(self):
        self.assertEqual(self.mc.gets("none"), (None, None))
        self.mc.set("counter", b"1")
        value, token = self.mc.gets("counter")
        self.assertEqual(value, b"1")
        self.assertRegex(token, rb"^\d+$")
        self.assertIs(self.mc.cas("counter", b"2", token), True)
        self.assertEqual(self.mc.get("counter"), b"2")
        # The token changed with the store: the old one is stale now.
        self.assertIs(self.mc.cas("counter", b"3", token), False)
        self.assertEqual(self.mc.get("counter"), b"2")
        new_value, new_token = self.mc.gets("counter")
        self.assertNotEqual(new_token, token)
        self.assertIs(self.mc.cas("gone", b"x", new_token), None)
        self.assertIsNone(self.mc.get("gone"))

    def test_any_store_changes_the_token(self):
        self.mc.set("k", b"v")
        _, token = self.mc.gets("k")
        self.mc.append("k", b"w")
        self.assertIs(self.mc.cas("k", b"z", token), False)
        self.assertEqual(self.mc.get("k"), b"vw")

    def test_gets_many(self):
        self.mc.set_many({"x": b"1", "y": b"2"})
        result = self.mc.gets_many(["x", "y", "z"])
        self.assertEqual(sorted(result), ["x", "y"])
        self.assertEqual(result["x"][0], b"1")
        self.assertEqual(result["y"][0], b"2")
        self.assertNotEqual(result["x"][1], result["y"][1])
        self.assertEqual(result["x"], self.mc.gets("x"))
        self.assertEqual(self.mc.gets_many([]), {})


class Deletion(ServerTest):
    def test_delete(self):
        self.mc.set("doomed", b"v")
        self.assertIs(self.mc.delete("doomed"), True)
        self.assertIsNone(self.mc.get("doomed"))
        self.assertIs(self.mc.delete("doomed"), False)

    def test_delete_many(self):
        self.mc.set_many({"a": b"1", "b": b"2", "c": b"3"})
        self.assertIs(self.mc.delete_many(["a", "b", "never"]), True)
        self.assertEqual(self.mc.get_many(["a", "b", "c"]), {"c": b"3"})

    def test_flush_all(self):
        self.mc.set_many({"a": b"1", "b": b"2"})
        self.assertIs(self.mc.flush_all(), True)
        self.assertEqual(self.mc.get_many(["a", "b"]), {})
        self.assertTrue(self.mc.add("a", b"again"))
        self.assertEqual(self.mc.get("a"), b"again")


class Arithmetic(ServerTest):
    def test_incr_and_decr(self):
        self.assertIsNone(self.mc.incr("missing", 1))
        self.assertIsNone(self.mc.decr("missing", 1))
        self.mc.set("n", b"10")
        self.assertEqual(self.mc.incr("n", 5), 15)
        self.assertEqual(self.mc.get("n"), b"15")
        self.assertEqual(self.mc.decr("n", 3), 12)
        self.assertEqual(self.mc.decr("n", 100), 0, "decr stops at zero")
        self.assertEqual(int(self.mc.get("n")), 0)

    def test_incr_wraps_at_64_bits(self):
        self.mc.set("big", b"18446744073709551615")
        self.assertEqual(self.mc.incr("big", 1), 0)
        self.mc.set("big", b"18446744073709551610")
        self.assertEqual(self.mc.incr("big", 10), 4)

    def test_decr_to_a_shorter_number(self):
        self.mc.set("n", b"100")
        self.assertEqual(self.mc.decr("n", 1), 99)
        # The protocol allows the shorter number to be space-padded to the old length.
        self.assertIn(self.mc.get("n"), (b"99", b"99 "))
        self.assertEqual(self.mc.incr("n", 1), 100)
        self.assertEqual(self.mc.get("n"), b"100")

    def test_incr_on_a_non_number_is_a_client_error(self):
        self.mc.set("word", b"ten")
        with self.assertRaises(exceptions.MemcacheClientError) as raised:
            self.mc.incr("word", 1)
        self.assertIn(b"non-numeric", raised.exception.args[0])
        self.assertEqual(self.mc.get("word"), b"ten")


class Expiry(ServerTest):
    def test_exptimes_touch_and_gat(self):
        now = int(time.time())
        self.mc.set("short", b"v", expire=1)
        self.mc.set("forever", b"v")
        self.mc.set("absolute_future", b"v", expire=now + 3600)
        self.mc.set("touched_short", b"v")
        self.mc.set("touched_long", b"v", expire=1)
        self.mc.set("gat_short", b"g")
        self.mc.set("gats_long", b"h", expire=1)
        self.assertIs(self.mc.set("negative", b"v", expire=-1), True)
        self.assertIs(self.mc.set("absolute_past", b"v", expire=now - 10), True)
        # A negative or past exptime stores an item that is already expired.
        self.assertIsNone(self.mc.get("negative"))
        self.assertIsNone(self.mc.get("absolute_past"))

        self.assertIs(self.mc.touch("touched_short", expire=1), True)
        self.assertIs(self.mc.touch("touched_long", expire=3600), True)
        self.assertIs(self.mc.touch("never_set", expire=10), False)
        self.assertEqual(
            self.mc.raw_command("gat 1 gat_short missing", end_tokens=b"END\r\n"),
            b"VALUE gat_short 0 1\r\ng\r\n",
        )
        _, token = self.mc.gets("gats_long")
        reply = self.mc.raw_command("gats 3600 gats_long", end_tokens=b"END\r\n")
        self.assertEqual(reply, b"VALUE gats_long 0 1 %s\r\nh\r\n" % token)
        self.assertEqual(self.mc.raw_command("gat 10 missing", end_tokens=b"END\r\n"), b"")

        time.sleep(3)
        self.assertIsNone(self.mc.get("short"))
        self.assertIsNone(self.mc.get("touched_short"))
        self.assertIsNone(self.mc.get("gat_short"))
        self.assertEqual(
            self.mc.get_many(["forever", "absolute_future", "touched_long", "gats_long"]),
            {"forever": b"v", "absolute_future": b"v", "touched_long": b"v", "gats_long": b"h"},
        )

    def test_delayed_flush_all(self):
        self.mc.set("early", b"v")
        # memcached invalidates items from one second before the flush time on, so a delay
        # of 1 acts at once; 3 leaves a margin against the clock ticking meanwhile.
        self.assertIs(self.mc.flush_all(delay=3), True)
        self.assertEqual(self.mc.get("early"), b"v", "a delayed flush waits")
        time.sleep(4)
        self.assertIsNone(self.mc.get("early"))
        self.assertTrue(self.mc.set("late", b"w"))
        self.assertEqual(self.mc.get("late"), b"w", "items stored after the flush time live")


class NoReply(ServerTest):
    def test_noreply_variants_take_effect_without_replies(self):
        quiet = client(default_noreply=True)
        try:
            self.assertIs(quiet.set("s", b"1"), True)
            self.assertEqual(quiet.set_many({"m1": b"a", "m2": b"b"}), [])
            self.assertIs(quiet.add("s", b"ignored"), True)  # NOT_STORED, but unsaid
            self.assertIs(quiet.add("a", b"added"), True)
            self.assertIs(quiet.replace("a", b"replaced"), True)
            self.assertIs(quiet.replace("nobody", b"x"), True)
            self.assertIs(quiet.append("a", b"+"), True)
            self.assertIs(quiet.prepend("a", b"+"), True)
            self.assertIs(quiet.set("n", b"5"), True)
            self.assertIsNone(quiet.incr("n", 10, noreply=True))
            self.assertIsNone(quiet.decr("n", 3, noreply=True))
            self.assertIs(quiet.set("t", b"v"), True)
            self.assertIs(quiet.touch("t", expire=3600), True)
            self.assertIs(quiet.set("d", b"v"), True)
            self.assertIs(quiet.delete("d"), True)
            self.assertIs(quiet.delete_many(["m2"]), True)
            # A command with a reply: everything before it on this connection is done.
            self.assertEqual(quiet.version(), self.mc.version())
            _, token = self.mc.gets("s")
            self.assertIsNotNone(token)
            self.assertIs(quiet.cas("s", b"2", token, noreply=True), True)
            # Nothing was answered, so the next real reply on this connection is its own.
            self.assertEqual(quiet.get("s"), b"2")
        finally:
            quiet.close()
        self.assertEqual(
            self.mc.get_many(["s", "m1", "m2", "a", "nobody", "n", "t", "d"]),
            {"s": b"2", "m1": b"a", "a": b"+replaced+", "n": b"12", "t": b"v"},
        )

    def test_flush_all_noreply(self):
        self.mc.set("x", b"1")
        quiet = client(default_noreply=True)
        try:
            self.assertIs(quiet.flush_all(noreply=True), True)
            self.assertIsNone(quiet.get("x"))
        finally:
            quiet.close()

    def test_noreply_argument_on_a_replying_client(self):
        self.assertIs(self.mc.set("k", b"v", noreply=True), True)
        self.assertIs(self.mc.add("k", b"w", noreply=True), True)
        self.assertEqual(self.mc.get("k"), b"v")


class Keys(ServerTest):
    def test_unicode_keys(self):
        unicode_client = client(allow_unicode_keys=True)
        try:
            keys = {"ключ": b"cyrillic", "キー": b"japanese", "clé-🔑": b"emoji"}
            self.assertEqual(unicode_client.set_many(keys), [])
            for key, value in keys.items():
                self.assertEqual(unicode_client.get(key), value)
            self.assertEqual(unicode_client.get_many(list(keys)), keys)
            # On the wire a key is its UTF-8 bytes.
            raw = self.mc.raw_command("get ".encode() + "ключ".encode("utf-8"), end_tokens=b"END\r\n")
            self.assertEqual(raw, b"VALUE " + "ключ".encode("utf-8") + b" 0 8\r\ncyrillic\r\n")
            self.assertTrue(unicode_client.delete("キー"))
            self.assertIsNone(unicode_client.get("キー"))
        finally:
            unicode_client.close()

    def test_key_length_limit(self):
        longest = "k" * 250
        self.assertTrue(self.mc.set(longest, b"v"))
        self.assertEqual(self.mc.get(longest), b"v")
        # 251 bytes: pymemcache refuses before sending; the server refuses too.
        with self.assertRaises(exceptions.MemcacheIllegalInputError):
            self.mc.set("k" * 251, b"v")
        with self.assertRaises(exceptions.MemcacheClientError):
            self.mc.raw_command("get " + "k" * 251)
        self.assertEqual(self.mc.get(longest), b"v")


class ServerCommands(ServerTest):
    def test_version(self):
        self.assertRegex(self.mc.version(), rb"^\d+\.\d+\.\d+\S*$")

    def test_stats_counters_follow_commands(self):
        before = self.counters()
        self.mc.set("a", b"1")
        self.mc.set("b", b"2")
        self.mc.get("a")
        self.mc.get_many(["a", "b", "c"])
        self.mc.get("missing")
        self.mc.delete("a")
        self.mc.delete("a")
        self.mc.set("n", b"1")
        self.mc.incr("n", 1)
        self.mc.incr("nope", 1)
        self.mc.touch("b", 100)
        after = self.counters()

        def delta(name):
            return after[name] - before[name]

        self.assertEqual(delta(b"cmd_set"), 3)
        self.assertEqual(delta(b"get_hits"), 3)
        self.assertEqual(delta(b"get_misses"), 2)
        self.assertEqual(delta(b"cmd_get"), 5)
        self.assertEqual(delta(b"delete_hits"), 1)
        self.assertEqual(delta(b"delete_misses"), 1)
        self.assertEqual(delta(b"incr_hits"), 1)
        self.assertEqual(delta(b"incr_misses"), 1)
        self.assertEqual(delta(b"touch_hits"), 1)
        # Three sets; an incr whose result fits in place stores no new item.
        self.assertEqual(delta(b"total_items"), 3)
        self.assertGreaterEqual(after[b"curr_connections"], 1)
        self.assertEqual(after[b"pid"], before[b"pid"])
        self.assertGreaterEqual(after[b"uptime"], before[b"uptime"])
        self.assertEqual(after[b"version"], self.mc.version())
        self.assertAlmostEqual(after[b"time"], time.time(), delta=5)

    def test_stats_groups(self):
        self.mc.set("x", b"y" * 100)
        settings = self.mc.stats("settings")
        self.assertEqual(settings[b"tcpport"], SERVER[1])
        self.assertGreater(settings[b"maxbytes"], 0)
        self.assertGreater(settings[b"maxconns"], 0)
        self.assertEqual(settings[b"udpport"], 0)
        items = self.mc.stats("items")
        self.assertTrue(any(re.fullmatch(rb"items:\d+:number", key) for key in items), items)
        slabs = self.mc.stats("slabs")
        self.assertGreaterEqual(slabs[b"active_slabs"], 1)
        self.assertTrue(any(re.fullmatch(rb"\d+:chunk_size", key) for key in slabs), slabs)
        conns = self.mc.stats("conns")
        self.assertTrue(any(re.fullmatch(rb"\d+:addr", key) for key in conns), conns)

    def test_verbosity_and_cache_memlimit(self):
        self.assertEqual(self.mc.raw_command("verbosity 0"), b"OK")
        megabytes = self.mc.stats("settings")[b"maxbytes"] // (1024 * 1024)
        self.assertIs(self.mc.cache_memlimit(megabytes), True)
        self.assertEqual(self.mc.stats("settings")[b"maxbytes"], megabytes * 1024 * 1024)

    def test_unknown_command(self):
        with self.assertRaises(exceptions.MemcacheUnknownCommandError):
            self.mc.raw_command("bogus")
        self.assertTrue(self.mc.set("still", b"fine"))
        self.assertEqual(self.mc.get("still"), b"fine")

    def test_shutdown_is_refused_without_its_flag(self):
        with self.assertRaises(exceptions.MemcacheUnknownCommandError):
            self.mc.shutdown()
        self.assertTrue(self.mc.set("alive", b"yes"))

    def test_quit_closes_the_connection(self):
        self.mc.set("k", b"v")
        self.mc.quit()
        self.assertIsNone(self.mc.sock)
        # The client reconnects on its next command.
        self.assertEqual(self.mc.get("k"), b"v")
        with socket.create_connection(SERVER, timeout=5) as raw:
            raw.sendall(b"quit\r\n")
            self.assertEqual(raw.recv(100), b"", "the server closes after quit")


class Pipelining(ServerTest):
    def test_many_commands_in_one_write(self):
        commands = b"".join(b"set p%d 0 0 1\r\n%d\r\n" % (i, i % 10) for i in range(200))
        commands += b"get " + b" ".join(b"p%d" % i for i in range(200)) + b"\r\n"
        with socket.create_connection(SERVER, timeout=5) as raw:
            raw.sendall(commands)
            expected = b"STORED\r\n" * 200
            expected += b"".join(b"VALUE p%d 0 1\r\n%d\r\n" % (i, i % 10) for i in range(200))
            expected += b"END\r\n"
            received = b""
            while len(received) < len(expected):
                chunk = raw.recv(65536)
                if not chunk:
                    break
                received += chunk
            self.assertEqual(received, expected)


def main():
    global SERVER
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="127.0.0.1:11211", help="HOST:PORT")
    options, rest = parser.parse_known_args()
    host, _, port = options.server.rpartition(":")
    SERVER = (host or "127.0.0.1", int(port))
    program = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
    result = program.result
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    passed = result.testsRun - failed - len(result.skipped)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(0 if failed == 0 and result.testsRun > 0 else 1)


if __name__ == "__main__":
    main()
