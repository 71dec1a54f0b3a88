#!/usr/bin/env python3
"""Measures how much acknowledged data a crash loses with the persistent tier on.

Starts rat_memcached with a fresh --data-dir, keeps rat_loadgen writing to it (so the
writer has a backlog to keep in check), and from one more connection writes a numbered
key at a time, noting when each write was acknowledged. Then it kills the server with
SIGKILL, starts it again on the same directory, reads those keys back and reports the
crash window: how long before the kill the oldest acknowledged write that was lost had
been acknowledged (0 when nothing acknowledged was lost). It also checks that every
value it reads back is one that was written.

usage: bench/crash_window.py [--flush-ms 100] [--seconds 5] [--rounds 3]
       [--binary target/release/rat_memcached] [--loadgen target/release/rat_loadgen]
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(binary, port, data_dir, flush_ms):
    server = subprocess.Popen(
        [binary, "-p", str(port), "-l", "127.0.0.1", "-U", "0", "-t", "1",
         "--data-dir", data_dir, f"--l2-flush-ms={flush_ms}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(200):
        try:
            return server, socket.create_connection(("127.0.0.1", port))
        except OSError:
            if server.poll() is not None:
                sys.exit(f"rat_memcached exited: {server.stderr.read().decode()}")
            time.sleep(0.05)
    sys.exit("rat_memcached did not start")


def read_line(conn, buffer):
    while b"\r\n" not in buffer:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buffer += chunk
    line, _, rest = buffer.partition(b"\r\n")
    return line, rest


def one_round(args, round_number):
    data_dir = tempfile.mkdtemp(prefix="rat-crash-window-")
    port = free_port()
    try:
        server, conn = start(args.binary, port, data_dir, args.flush_ms)
        load = subprocess.Popen(
            [args.loadgen, "--server", f"127.0.0.1:{port}", "--set-ratio", "1:0",
             "--duration", str(args.seconds + 5), "--conns", "20"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        acknowledged = []  # (time, key, value)
        buffer = b""
        started = time.monotonic()
        number = 0
        while time.monotonic() - started < args.seconds:
            key = f"window:{number}"
            value = f"value-{number}".encode()
            conn.sendall(f"set {key} 0 0 {len(value)}\r\n".encode() + value + b"\r\n")
            line, buffer = read_line(conn, buffer)
            if line != b"STORED":
                sys.exit(f"set {key}: {line!r}")
            acknowledged.append((time.monotonic(), key, value))
            number += 1
        server.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        server.wait()
        load.kill()
        load.wait()
        conn.close()

        server, conn = start(args.binary, port, data_dir, args.flush_ms)
        buffer = b""
        lost = []
        for at, key, value in acknowledged:
            conn.sendall(f"get {key}\r\n".encode())
            line, buffer = read_line(conn, buffer)
            if line == b"END":
                lost.append(at)
                continue
            data, buffer = read_line(conn, buffer)
            end, buffer = read_line(conn, buffer)
            if data != value or end != b"END":
                sys.exit(f"{key}: read back {data!r}, wrote {value!r}")
        server.send_signal(signal.SIGTERM)
        server.wait()
        window_ms = (killed - min(lost)) * 1000 if lost else 0.0
        print(f"round {round_number}: {len(acknowledged)} acknowledged writes, "
              f"{len(lost)} lost, window {window_ms:.0f} ms "
              f"(flush interval {args.flush_ms} ms)")
        return window_ms
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flush-ms", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--binary", default=os.path.join(ROOT, "target/release/rat_memcached"))
    parser.add_argument("--loadgen", default=os.path.join(ROOT, "target/release/rat_loadgen"))
    args = parser.parse_args()
    windows = [one_round(args, n + 1) for n in range(args.rounds)]
    print(f"largest window: {max(windows):.0f} ms over {args.rounds} rounds")


if __name__ == "__main__":
    main()
