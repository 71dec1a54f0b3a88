#!/usr/bin/env python3
"""Writes link/idle-text.ld: the functions an idle rat_memcached runs, to be linked together.

An idle server runs a few hundred kilobytes of code (startup, the workers' and the
acceptor's polls, the expiry sweeper's tick), scattered by the default layout over the
whole 2-3 MB of .text between code it never runs (the persistent tier's storage engine,
the TOML parser, panic and backtrace machinery). The kernel maps a file page together with
its cached neighbours (fault-around, 64 KiB by default), so scattered code keeps nearly all
of .text resident. Listing the functions an idle server runs first, in a section of their
own, keeps the rest unmapped until something runs it.

Usage: RAT_MEMCACHED_IDLE_LAYOUT=0 cargo build --release
       python3 link/idle-text.py [path/to/rat_memcached]
       cargo build --release

The binary profiled must be linked without this script (RAT_MEMCACHED_IDLE_LAYOUT=0):
callgrind attributes no code to a second executable section. Needs valgrind and nm. The server runs under callgrind for a few seconds with
two workers, answers one `version`, and stops; every function that ran becomes a pattern.
Symbol hashes (`17h<hash>E`, `Cs<hash>_`) are replaced by `*`, so the list survives
rebuilds and compiler upgrades; a function renamed or added since falls back to .text,
which costs memory, not correctness.
"""

import bisect
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(ROOT, "link", "idle-text.ld")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_under_callgrind(binary, profile):
    port = free_port()
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--dump-instr=yes",
         f"--callgrind-out-file={profile}", binary,
         "-p", str(port), "-l", "127.0.0.1", "-U", "0", "-t", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                client.sendall(b"version\r\n")
                if not client.recv(100).startswith(b"VERSION "):
                    sys.exit("the server did not answer `version`")
            break
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                sys.exit("the server did not start under valgrind")
            time.sleep(0.2)
    # A few ticks of the sweeper and the polls' timeouts.
    time.sleep(3)
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=30)


def executed_addresses(profile, binary):
    """Instruction addresses in `binary` that ran, from a callgrind profile."""
    name = os.path.basename(binary)
    objects, current, address, found = {}, None, 0, set()
    spec = re.compile(r"^(c?ob|c?fi|c?fl|fe|c?fn)=\((\d+)\)(?: (.*))?$")
    with open(profile) as lines:
        for line in lines:
            line = line.rstrip("\n")
            match = spec.match(line)
            if match:
                kind, ident, text = match.groups()
                if kind in ("ob", "cob") and text:
                    objects[ident] = text
                if kind == "ob":
                    current = objects[ident]
                continue
            if not line or line.startswith("calls="):
                continue
            token = line.split()[0]
            # Positions are absolute or relative to the previous cost line.
            if token.startswith("0x"):
                address = int(token, 16)
            elif token[0] in "+-" and len(token) > 1:
                step = int(token[1:], 16)
                address += step if token[0] == "+" else -step
            elif token != "*":
                continue
            if current and current.endswith(name):
                found.add(address)
    return found


def functions_at(addresses, binary):
    """Names of every function symbol covering one of `addresses` (aliases included)."""
    listing = subprocess.run(["nm", "-S", "-n", "--defined-only", binary],
                             capture_output=True, text=True, check=True).stdout
    symbols = []
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[2] in "tTwW":
            symbols.append((int(fields[0], 16), int(fields[1], 16), fields[3]))
    starts = [symbol[0] for symbol in symbols]
    names = []
    seen = set()
    for address in sorted(addresses):
        index = bisect.bisect_right(starts, address) - 1
        while index >= 0 and starts[index] + 0x10000 > address:
            start, size, name = symbols[index]
            if start <= address < start + size and name not in seen:
                seen.add(name)
                names.append(name)
            index -= 1
    return names


def pattern(name):
    """The section-name pattern of a function, without the hashes that change per build."""
    name = re.sub(r"17h[0-9a-f]{16}E", "17h*E", name)
    name = re.sub(r"\.llvm\.\d+$", "*", name)
    name = re.sub(r"Cs[0-9A-Za-z]+_", "Cs*_", name)
    # GCC's local clones of C functions (mimalloc): foo.part.0, foo.constprop.1.
    return re.sub(r"\.(part|constprop|isra|cold)\.\d+.*$", "*", name)


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")),
        "release", "rat_memcached")
    with tempfile.TemporaryDirectory() as scratch:
        profile = os.path.join(scratch, "callgrind.out")
        run_under_callgrind(binary, profile)
        names = functions_at(executed_addresses(profile, binary), binary)
    patterns = sorted({pattern(name) for name in names if not name.startswith("_start")})
    with open(OUTPUT, "w") as script:
        script.write(
            "/* The functions an idle rat_memcached runs, linked ahead of the rest of .text\n"
            " * (build.rs passes this script to the linker). Written by link/idle-text.py;\n"
            " * regenerate it after large changes to what the server runs at startup. */\n"
            "SECTIONS\n{\n  .text.idle :\n  {\n")
        for each in patterns:
            script.write(f"    *(.text.{each} .text.*.{each})\n")
        script.write("  }\n}\nINSERT BEFORE .text;\n")
    print(f"{len(patterns)} patterns from {len(names)} functions written to {OUTPUT}")


if __name__ == "__main__":
    main()
