"""Renders the main panels of charts/zhengyun/files/dashboard.json as a PNG, from real metrics.

Scrapes a running operator's /metrics once a second while it drives some activity through
kubectl (pods coming and going in the sample tenants, a tenant whose deletion is blocked),
then computes each panel the way its PromQL does and plots it. Run by hack/render-dashboard.sh.
"""
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ADMIN = sys.argv[1]
OUT = sys.argv[2]
DURATION = int(sys.argv[3]) if len(sys.argv) > 3 else 150
LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$')


def scrape():
    text = urllib.request.urlopen(f"http://{ADMIN}/metrics", timeout=5).read().decode()
    series = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            series.setdefault(m.group(1), []).append((labels, float(m.group(3))))
    return series


def kubectl(*args, stdin=None):
    subprocess.run(["kubectl", *args], input=stdin, text=True, capture_output=True)


def pod(ns, name, cpu):
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
                       "spec": {"containers": [{"name": "c", "image": "busybox",
                                                "resources": {"requests": {"cpu": cpu, "memory": "256Mi"}}}]}})


def activity(stop):
    """Departments at work: waves of pods, one blocked deletion."""
    kubectl("apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "zhengyun.io/v1alpha1", "kind": "Tenant", "metadata": {"name": "archive"},
        "spec": {"department": {"code": "ARCHIVE-1", "name": "City Archives", "nameZh": "市档案馆"},
                 "zone": "extranet", "securityLevel": 2, "owners": [{"kind": "User", "name": "wang.fang"}],
                 "namespaces": [{"suffix": "records"}], "quota": {"pods": 20, "cpu": 4, "memory": "8Gi"},
                 "deletionPolicy": "Delete"}}))
    i = 0
    while not stop.is_set():
        for ns, cpu in (("bigdata-portal", "500m"), ("bigdata-exchange", "250m")):
            kubectl("apply", "-f", "-", stdin=pod(ns, f"job-{i}", cpu))
        if i % 4 == 3:
            kubectl("delete", "pods", "--all", "-n", "bigdata-exchange", "--wait=false")
        if i == 6:
            kubectl("apply", "-f", "-", stdin=json.dumps({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "ledger", "namespace": "archive-records"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}))
            kubectl("delete", "tenant", "archive", "--wait=false")
        if i == 14:
            kubectl("patch", "tenant", "archive", "--type", "merge", "-p", '{"spec":{"confirmDataDeletion":true}}')
        if i == 18:
            kubectl("delete", "pods", "--all", "-n", "bigdata-portal", "--wait=false")
        i += 1
        stop.wait(4)


def main():
    stop = threading.Event()
    worker = threading.Thread(target=activity, args=(stop,))
    worker.start()
    samples = []
    start = time.time()
    while time.time() - start < DURATION:
        samples.append((time.time() - start, scrape()))
        time.sleep(1)
    stop.set()
    worker.join()

    def value(s, name, **match):
        return sum(v for labels, v in s.get(name, []) if all(labels.get(k) == w for k, w in match.items()))

    def rate(name, window=15, **match):
        xs, ys = [], []
        for i, (t, s) in enumerate(samples):
            j = max(0, i - window)
            dt = t - samples[j][0]
            if dt > 0:
                xs.append(t)
                ys.append((value(s, name, **match) - value(samples[j][1], name, **match)) / dt)
        return xs, ys

    fig, axes = plt.subplots(2, 2, figsize=(14, 8.5))
    fig.suptitle("zhengyun operator — main dashboard panels, from a local run (hack/render-dashboard.sh)", fontsize=13)

    ax = axes[0][0]
    for result in ("success", "error"):
        ax.plot(*rate("controller_runtime_reconcile_total", controller="tenant", result=result), label=result)
    ax.set_title("Fleet: reconciliations per second by result")
    ax.set_ylabel("reconciles/s")
    ax.legend()

    ax = axes[0][1]
    tenants = sorted({labels["tenant"] for _, s in samples for labels, _ in s.get("zhengyun_tenant_quota_hard", [])})
    for tenant in tenants:
        for resource in ("pods", "requests.cpu"):
            xs, ys = [], []
            for t, s in samples:
                hard = value(s, "zhengyun_tenant_quota_hard", tenant=tenant, resource=resource)
                if hard > 0:
                    xs.append(t)
                    ys.append(value(s, "zhengyun_tenant_quota_used", tenant=tenant, resource=resource) / hard)
            if xs and max(ys) > 0:
                ax.plot(xs, ys, label=f"{tenant} {resource}")
    ax.axhline(0.9, color="red", linestyle="--", linewidth=0.8, label="alert at 90%")
    ax.set_title("Per-tenant quota: used / hard")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)

    ax = axes[1][0]
    buckets = sorted({float(labels["le"]) for _, s in samples
                      for labels, _ in s.get("controller_runtime_reconcile_time_seconds_bucket", [])
                      if labels["le"] != "+Inf"})
    for q in (0.5, 0.95, 0.99):
        xs, ys = [], []
        for i, (t, s) in enumerate(samples):
            j = max(0, i - 30)
            counts = [value(s, "controller_runtime_reconcile_time_seconds_bucket", le=_fmt(b))
                      - value(samples[j][1], "controller_runtime_reconcile_time_seconds_bucket", le=_fmt(b)) for b in buckets]
            total = value(s, "controller_runtime_reconcile_time_seconds_count") - value(samples[j][1], "controller_runtime_reconcile_time_seconds_count")
            if total > 0:
                xs.append(t)
                ys.append(_quantile(q, buckets, counts, total) * 1000)
        ax.plot(xs, ys, label=f"p{int(q * 100)}")
    ax.set_title("Reconcile latency (histogram_quantile over 30 s)")
    ax.set_ylabel("milliseconds")
    ax.set_xlabel("seconds into the run")
    ax.legend()

    ax = axes[1][1]
    categories = sorted({labels["category"] for _, s in samples for labels, _ in s.get("zhengyun_reconcile_errors_total", [])})
    for c in categories:
        ax.plot(*rate("zhengyun_reconcile_errors_total", category=c), label=c)
    ready = [value(s, "zhengyun_tenants") - value(s, "zhengyun_tenant_conditions", type="Ready", status="False")
             for _, s in samples]
    count = [value(s, "zhengyun_tenants") for _, s in samples]
    ax2 = ax.twinx()
    ax2.step([t for t, _ in samples], count, color="gray", where="post", label="tenants")
    ax2.step([t for t, _ in samples], ready, color="green", where="post", label="tenants Ready")
    ax2.set_ylim(0, max(count + [1]) + 1)
    ax2.legend(loc="upper right", fontsize=8)
    ax.set_title("Errors by category (per second) and tenants Ready")
    ax.set_xlabel("seconds into the run")
    ax.legend(loc="upper left", fontsize=8)

    fig.tight_layout()
    fig.savefig(OUT, dpi=90)
    print(f"wrote {OUT} from {len(samples)} scrapes")


def _fmt(b):
    s = repr(b)
    return s[:-2] if s.endswith(".0") else s


def _quantile(q, bounds, counts, total):
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for b, c in zip(bounds, counts):
        if c >= rank:
            return prev_bound + (b - prev_bound) * ((rank - prev_count) / max(c - prev_count, 1e-9))
        prev_bound, prev_count = b, c
    return bounds[-1]


if __name__ == "__main__":
    main()
