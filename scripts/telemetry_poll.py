#!/usr/bin/env python3
"""Polls a telemetry socket as a monitoring agent would, for `TELEMETRY_POLL=1 scripts/bench fwd`.

Usage: telemetry_poll.py SOCKET [PERIOD_S] [COMMAND...]
Waits for SOCKET (DPDK's telemetry v2) to appear, connects, then sends each COMMAND
(default /ethdev/stats,0 and /ethdev/stats,1) every PERIOD_S seconds (default 0.1) until the
server goes away; prints how many replies it read.
"""
import json
import socket
import sys
import time

path = sys.argv[1]
period = float(sys.argv[2]) if len(sys.argv) > 2 else 0.1
commands = sys.argv[3:] or ["/ethdev/stats,0", "/ethdev/stats,1"]
deadline = time.monotonic() + 30
while True:
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.connect(path)
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(f"telemetry_poll: no server at {path}")
        time.sleep(0.05)
hello = json.loads(s.recv(1024))
size = hello["max_output_len"]
replies = 0
try:
    while True:
        for c in commands:
            s.send(c.encode())
            reply = s.recv(size)
            if not reply:
                raise OSError("closed")
            json.loads(reply)
            replies += 1
        time.sleep(period)
except (OSError, ValueError):
    pass
print(f"telemetry_poll: {replies} replies from pid {hello['pid']}", file=sys.stderr)
