"""Renders a traffic matrix that the e2e traffic test wrote (matrix-STAGE.json under the e2e
logs) as a PNG heatmap: rows are source pods, columns destination pod:port; green where the
connection was made (with its latency), red where it was refused or timed out, and a black
frame where the observation differed from the policies' verdict (the test fails then).

    python hack/render-matrix.py matrix-2-channel-open.json docs/traffic-matrix.png
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402


def main(src, out):
    m = json.load(open(src))
    pods = m["pods"]
    ports = m["ports"]
    label = {p["name"]: f'{p.get("label") or p["namespace"] + "/" + p["name"]}\n({p["node"]})' for p in pods}
    rows = [p["name"] for p in pods]
    cols = [(p["name"], port) for p in pods for port in ports]
    cells = {(c["from"], c["to"], c["port"]): c for c in m["cells"]}
    grid = []
    for r in rows:
        line = []
        for to, port in cols:
            c = cells.get((r, to, port))
            line.append(-1 if c is None else (1 if c["ok"] else 0))
        grid.append(line)
    fig, ax = plt.subplots(figsize=(1.1 * len(cols) + 2.5, 0.8 * len(rows) + 2))
    cmap = ListedColormap(["#e0e0e0", "#d9534f", "#5cb85c"])
    ax.imshow([[v + 1 for v in line] for line in grid], cmap=cmap, vmin=0, vmax=2, aspect="auto")
    for i, r in enumerate(rows):
        for j, (to, port) in enumerate(cols):
            c = cells.get((r, to, port))
            if c is None:
                text = "self"
            elif c["ok"]:
                text = f'open\n{c["ms"]:.1f} ms'
            else:
                text = "denied"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="black" if c is None else "white")
            if c is not None and c["ok"] != c["predicted"]:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=3, ec="black"))
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels([f'{label[to]}\n:{port}' for to, port in cols], fontsize=7)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([label[r] for r in rows], fontsize=8)
    ax.xaxis.tick_top()
    ax.set_title(f'Observed TCP connections between probe pods and the outside network ({m["stage"]}); every cell equals the policies\' verdict',
                 fontsize=10, pad=60)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
