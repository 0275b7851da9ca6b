#!/usr/bin/env python3
"""Compares benchmark outputs of DPDK and of this project, figure by figure.

Usage: bench_compare.py KIND DPDK_OUTPUT... -- OURS_OUTPUT...
       bench_compare.py ixgbe -- OURS_OUTPUT...   (against a published figure, see REFERENCES)
Each output file is one run. KIND says how to read the figures:
  ring     DPDK's ring_perf_autotest lines, 25.11's ("legacy APIs - SP/SC - bulk (n:8  ) -
           cycles per elem: 2.322") or 22.11's ("legacy APIs: SP/SC: bulk (size: 8): 7.37",
           "Total count (size: 8): N"); cycles are lower-is-better, counts higher-is-better.
           25.11's counts are left out: its "all worker nodes" test passes an element size
           of 0 as the bulk size, so it counts calls that move nothing.
  mempool  "mempool_autotest cache=.. cores=.. ... rate_persec=N" (25.11 pads the numbers,
           22.11 does not), each figure named by its text before "rate_persec="; higher is
           better. Only the sections of DPDK's ring pools count ("start performance test
           (without cache)", "(using ring_mp_mc, with cache)", ...): the lines of its
           user-owned cache read like the cached pool's (cache=512), and those of its
           default-ops pool ("start performance test for ...") like the ring pool's.
  fwd      testpmd outputs after "### forward-mode=M ports=P" lines: the "Rx-pps:" lines
           of each statistics show, summed over the P ports, median over the shows but the
           first (start-up); in Mpps, higher is better.
  guest-fwd  "### offered=N frames=M" then port_helper's "RECEIVED ok=.. rate=R": frames
           forwarded per second through the guest; higher is better.
  virtio-user  "### direction=tx|rx size=N [rings=split|packed]" then testpmd's "Tx-pps:" (tx) or "Rx-pps:" (rx)
           lines of the virtio-user side, median over the shows but the first two
           (start-up); in Mpps, higher is better.
  virtio-user-instr  "### direction=tx|rx seconds=S [rings=split|packed]" then testpmd's
           closing "TX-packets:" (tx) or "RX-packets:" (rx) and valgrind's "I refs:"; per
           direction and rings, instructions per packet between the shortest and the
           longest run; lower is better.
  ixgbe    testpmd's "CPU cycles/packet=X" (--record-core-cycles) and the bench's
           "instructions/packet (callgrind, ..., empty polls removed): X"; lower is better.
  startup  "### memory=MB" then "WHAT: X ms" lines; lower is better.
  hash     DPDK's hash_perf_autotest tables (a row of cycles per add, lookup, bulk lookup and
           delete per key size, under its section lines: locks, placement, data, hash given)
           and hash_readwrite_lf_perf_autotest's "Cycles per lookup: N" (under "Test: ..." and
           its reader and writer counts); lower is better. Ours adds tables of 2^20 entries after
           a "Table of N entries" line, which DPDK's test has not: they are shown on their own.
Prints each figure's medians and speedup (above 1.0: ours is faster), and last the line
"speedup vs DPDK: min <x> median <y>" (or vs the reference of REFERENCES).
"""
import re
import statistics
import sys


def ring_figures(text):
    figures, section = {}, ""
    for line in text.splitlines():
        if line.startswith("elem APIs"):
            break  # DPDK repeats everything for 16-byte elements; we compare the legacy part.
        m = re.match(r"### (.*) ###", line)
        if m:
            section = m.group(1)
            continue
        m = re.match(r"legacy APIs: (.*): ([0-9.]+)$", line)  # 22.11
        if m:
            figures[f"{section}: {m.group(1)}"] = (float(m.group(2)), False)
        m = re.match(r"legacy APIs - (.*) - cycles per elem: ([0-9.]+)$", line)  # 25.11
        if m:
            what = re.sub(r"n:(\d+) *", r"size: \1", m.group(1))
            figures[f"{section}: {what}, per object"] = (float(m.group(2)), False)
        m = re.match(r"Total count \((size: \d+)\): (\d+)", line)
        if m and "Testing using all worker nodes" in section and "cycles per elem" not in text:
            figures[f"all lcores, enq+deq calls in 100 ms ({m.group(1)})"] = (float(m.group(2)), True)
    return figures


def mempool_figures(text):
    figures, counted = {}, True
    for line in text.splitlines():
        if line.startswith("start performance test"):
            counted = not line.startswith("start performance test for") and "user-owned" not in line
        m = re.match(r"mempool_autotest (.*) rate_persec= *(\d+)", line)
        if m and counted:
            figures[m.group(1)] = (float(m.group(2)), True)
    return figures


def fwd_figures(text):
    figures, mode, ports, rates = {}, None, 1, []

    def close():
        if mode is not None:
            shows = [sum(rates[i:i + ports]) for i in range(0, len(rates) - ports + 1, ports)]
            if len(shows) > 1:
                figures[f"forward-mode={mode}, Mpps over {ports} ports"] = (statistics.median(shows[1:]) / 1e6, True)

    for line in text.splitlines():
        m = re.match(r"### forward-mode=(\S+) ports=(\d+)", line)
        if m:
            close()
            mode, ports, rates = m.group(1), int(m.group(2)), []
            continue
        m = re.match(r"\s*Rx-pps:\s+(\d+)", line)
        if m and mode is not None:
            rates.append(float(m.group(1)))
    close()
    return figures


def sectioned_figures(text, section, figure, name, higher_better):
    """Figures of lines matching `figure`, each in the section the last `### KEY=VALUE`
    line matching `section` opened; `name(match, value)` names each (its value: group 2)."""
    figures, current = {}, None
    for line in text.splitlines():
        m = re.match(section, line)
        if m:
            current = m.group(1)
        m = re.match(figure, line)
        if m and current is not None:
            figures[name(m, current)] = (float(m.group(2)), higher_better)
    return figures


def guest_fwd_figures(text):
    return sectioned_figures(text, r"### offered=(\d+)", r"RECEIVED ok=(\d+) .*rate=(\d+)",
                             lambda m, offered: f"frames/s forwarded, {offered}/s offered", True)


def virtio_figure(direction, size, rings, unit):
    """The name of a virtio-user figure; split rings (the default) go unnamed."""
    way = "TX into" if direction == "tx" else "RX from"
    packed = ", packed rings" if rings == "packed" else ""
    return f"{way} DPDK vhost, {size}-byte frames{packed}, {unit}"


def virtio_user_figures(text):
    figures, key, rates, want = {}, None, [], None

    def close():
        if key is not None and len(rates) > 2:
            figures[key] = (statistics.median(rates[2:]) / 1e6, True)

    for line in text.splitlines():
        m = re.match(r"### direction=(tx|rx) size=(\d+)(?: rings=(split|packed))?", line)
        if m:
            close()
            key, rates = virtio_figure(m.group(1), m.group(2), m.group(3), "Mpps"), []
            want = "Tx-pps" if m.group(1) == "tx" else "Rx-pps"
            continue
        m = re.match(r"\s*(Tx-pps|Rx-pps):\s+(\d+)", line)
        if m and key is not None and m.group(1) == want:
            rates.append(float(m.group(2)))
    close()
    return figures


def virtio_user_instr_figures(text):
    runs = {}  # (direction, rings) -> [(seconds, packets, instructions)]
    key = want = None
    for line in text.splitlines():
        m = re.match(r"### direction=(tx|rx) seconds=(\d+)(?: rings=(split|packed))?", line)
        if m:
            key, want = (m.group(1), m.group(3)), "TX-packets" if m.group(1) == "tx" else "RX-packets"
            runs.setdefault(key, []).append([int(m.group(2)), None, None])
            continue
        if key is None:
            continue
        m = re.match(r"\s*(TX-packets|RX-packets):\s+(\d+)", line)
        if m and m.group(1) == want:
            runs[key][-1][1] = int(m.group(2))  # the last one: the accumulated figure
        m = re.search(r"I\s+refs:\s+([\d,]+)", line)
        if m:
            runs[key][-1][2] = int(m.group(1).replace(",", ""))
    figures = {}
    for (way, rings), rs in runs.items():
        rs = sorted(r for r in rs if None not in r)
        if len(rs) >= 2 and rs[-1][1] > rs[0][1]:
            per_packet = (rs[-1][2] - rs[0][2]) / (rs[-1][1] - rs[0][1])
            figures[virtio_figure(way, 64, rings, "instructions/packet")] = (per_packet, False)
    return figures


IXGBE_CYCLES = "RX+TX io forwarding, 64-byte frames, cycles/packet"
IXGBE_INSTR = "RX+TX io forwarding, 64-byte frames, instructions/packet without empty polls"


def ixgbe_figures(text):
    figures = {}
    for line in text.splitlines():
        m = re.search(r"CPU cycles/packet=([0-9.]+)", line)
        if m:
            figures[IXGBE_CYCLES] = (float(m.group(1)), False)
        m = re.search(r"instructions/packet \(callgrind[^:]*empty polls removed\): ([0-9.]+)", line)
        if m:
            figures[IXGBE_INSTR] = (float(m.group(1)), False)
    return figures


# Where no peer can run in the same measurement (no DPDK PMD drives the project's 82599
# model), a published figure: the reference's name and its figures as a parse function
# returns them. The ixy paper (Emmerich et al., "The Case for Writing Network Drivers in
# High-Level Programming Languages", ANCS 2019) gives, at a batch size of 32, 100 cycles and
# 209 instructions per forwarded packet for ixy.rs (94 and 127 for ixy in C).
REFERENCES = {
    "ixgbe": ("ixy.rs", {IXGBE_CYCLES: (100.0, False), IXGBE_INSTR: (209.0, False)}),
}


def startup_figures(text):
    return sectioned_figures(text, r"### memory=(\d+)", r"(.*): ([0-9.]+) ms$",
                             lambda m, memory: f"{m.group(1)}, -m {memory}", False)


def hash_figures(text):
    figures, cols = {}, None
    entries = locks = placement = data = hashed = ""
    lf = test = ""
    writers = readers = bulk = None
    for line in text.splitlines():
        s = line.strip()
        m = re.match(r"Table of (\d+) entries", s)
        if m:
            entries = f"{m.group(1)} entries: "
        elif s.endswith("locks in the code"):
            locks = ", locks" if s.startswith("With ") else ""
        elif s == "ALL ELEMENTS IN PRIMARY LOCATION":
            placement = "primary"
        elif s == "ELEMENTS IN PRIMARY OR SECONDARY LOCATION":
            placement = "primary or secondary"
        elif s == "EXTENDABLE BUCKETS PERFORMANCE":
            placement, locks = "extendable", ""  # DPDK runs it without locks
        elif s.startswith("Operations with"):
            data = "no data" if s == "Operations without data" else "8-byte data"
        elif s.endswith("pre-computed hash values"):
            hashed = "hash given" if s.startswith("With ") else "hash computed"
        elif s.startswith("Keysize"):
            cols = s.split()[1:]
        elif not s:
            cols = None  # a table's rows end at an empty line
        elif cols and re.match(r"\d+(\s+\d+)+$", s):
            size, *values = s.split()
            for col, v in zip(cols, values):
                name = f"{entries}{placement}{locks}, {data}, {hashed}, {size}-byte keys: {col}"
                figures[name] = (float(v), False)
        # hash_readwrite_lf_perf_autotest
        m = re.match(r"Test lookup with read-write concurrency lock free support (\w+)", s)
        if m:
            lf = "" if m.group(1) == "enabled" else "lock-free off, "
        m = re.match(r"Test: (.*)", s)
        if m:
            test, writers, readers, bulk = m.group(1), None, None, False
        if s == "** With bulk-lookup **":
            bulk = True
        m = re.match(r"Number of (writers|readers): (\d+)", s)
        if m:
            if m.group(1) == "writers":
                writers = m.group(2)
            else:
                readers = m.group(2)
        m = re.match(r"Cycles per (lookup|write operation): (\d+)", s)
        if m:
            who = ", ".join(f"{w}: {n}" for w, n in (("writers", writers), ("readers", readers)) if n)
            name = f"{lf}{test} ({who}{', bulk' if bulk else ''}): cycles per {m.group(1)}"
            figures[name] = (float(m.group(2)), False)
    return figures


# Kinds whose outputs have figures of ours alone, shown apart from the comparison.
OURS_ALONE = {"hash"}


def main():
    kind, rest = sys.argv[1], sys.argv[2:]
    split = rest.index("--")
    parse = {"ring": ring_figures, "mempool": mempool_figures, "fwd": fwd_figures, "guest-fwd": guest_fwd_figures,
             "virtio-user": virtio_user_figures, "virtio-user-instr": virtio_user_instr_figures,
             "ixgbe": ixgbe_figures, "startup": startup_figures, "hash": hash_figures}[kind]
    runs = [[parse(open(f).read()) for f in files] for files in (rest[:split], rest[split + 1:])]
    dpdk, ours = runs
    peer = "DPDK"
    if kind in REFERENCES:
        peer, figures = REFERENCES[kind]
        dpdk = [figures]
    # Every figure any run has, so that one missing from a whole side is reported too.
    seen = list(dict.fromkeys(k for r in dpdk + ours for k in r))
    keys = [k for k in seen if all(k in r for r in dpdk + ours)]
    if not keys:
        sys.exit("bench_compare: no figure appears in every run of both: see the raw outputs")
    speedups = []
    width = max(len(k) for k in keys)
    print(f"{'figure':<{width}}  {peer:>12}  {'ours':>12}  speedup")
    for k in keys:
        d = statistics.median(r[k][0] for r in dpdk)
        o = statistics.median(r[k][0] for r in ours)
        higher_better = dpdk[0][k][1]
        s = (o / d) if higher_better else (d / o)
        speedups.append(s)
        print(f"{k:<{width}}  {d:>12.2f}  {o:>12.2f}  {s:6.2f}")
    missing = [k for k in seen if k not in keys]
    alone = [k for k in missing if kind in OURS_ALONE and all(k in r for r in ours) and not any(k in r for r in dpdk)]
    if alone:
        print(f"\nours alone (no such case in DPDK's test), median of {len(ours)} run(s):")
        for k in alone:
            print(f"{k:<{width}}  {'':>12}  {statistics.median(r[k][0] for r in ours):>12.2f}")
        missing = [k for k in missing if k not in alone]
    if len(missing) > 10:
        print(f"(not compared, missing from some run: {len(missing)} figures, e.g. {', '.join(missing[:3])})")
    elif missing:
        print(f"(not compared, missing from some run: {', '.join(missing)})")
    if kind in REFERENCES:
        print(f"ours: median of {len(ours)} run(s); {peer}: its published figure; speedup above 1.0: ours is faster")
    else:
        print(f"medians of {len(dpdk)} DPDK run(s) and {len(ours)} of ours; speedup above 1.0: ours is faster")
    print(f"speedup vs {peer}: min {min(speedups):.2f} median {statistics.median(speedups):.2f}")


if __name__ == "__main__":
    main()
