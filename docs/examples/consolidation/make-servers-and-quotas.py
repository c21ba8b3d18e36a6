#!/usr/bin/env python3
"""Writes servers.csv and quotas.csv for the example city from systems.csv (made-up data, deterministic).

servers.csv: each old server is the smallest common model that runs its systems (needs x replicas)
at most 30% busy on cpu, 50% on memory and 70% on disk (else the largest: 128 cores, 768 GiB,
4,800 GiB), with whole GPUs for its GPU shares; every fifth room also has one idle server
(nothing runs on it: it can go at once).
quotas.csv: each of the 40 departments; a department with systems gets what they request rounded
up (8 cores, 32 GiB, 500 GiB, whole GPUs), except dept-04, dept-11 and dept-23, whose cpu quota is
a fifth short; the 12 departments without a room get 16 cores, 64 GiB, 1,000 GiB.
"""
import csv
import math
import os
from collections import defaultdict

here = os.path.dirname(os.path.abspath(__file__))
need = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
dept_need = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
with open(os.path.join(here, "systems.csv")) as f:
    for r in csv.DictReader(line for line in f if not line.startswith("#")):
        n = int(r["replicas"])
        for i, c in enumerate(["cpu_cores", "memory_gib", "disk_gib", "gpus"]):
            need[(r["room"], r["server"])][i] += float(r[c]) * n
            dept_need[r["department"]][i] += float(r[c]) * n


def smallest(sizes, at_least):
    return next((s for s in sizes if s >= at_least), sizes[-1])


rows = []
for (room, server), (cpu, mem, disk, gpu) in sorted(need.items()):
    rows.append([room, server,
                 smallest([8, 16, 24, 32, 48, 64, 96, 128], cpu / 0.30),
                 smallest([16, 32, 64, 128, 192, 256, 384, 512, 768], mem / 0.50),
                 smallest([600, 1200, 2400, 4800], disk / 0.70),
                 math.ceil(gpu)])
for i, room in enumerate(sorted({room for room, _ in need})):
    if i % 5 == 4:
        rows.append([room, f"{room}-srv99", 16, 64, 1200, 0])
rows.sort()
with open(os.path.join(here, "servers.csv"), "w", newline="") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["room", "server", "cpu_cores", "memory_gib", "disk_gib", "gpus"])
    w.writerows(rows)

with open(os.path.join(here, "quotas.csv"), "w", newline="") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["department", "cpu_cores", "memory_gib", "disk_gib", "gpus"])
    for d in (f"dept-{i:02}" for i in range(1, 41)):
        if d in dept_need:
            cpu, mem, disk, gpu = dept_need[d]
            q = [8 * math.ceil(cpu / 8), 32 * math.ceil(mem / 32), 500 * math.ceil(disk / 500), math.ceil(gpu)]
            if d in ("dept-04", "dept-11", "dept-23"):
                q[0] = 8 * math.floor(cpu * 0.8 / 8)
        else:
            q = [16, 64, 1000, 0]
        w.writerow([d] + q)
