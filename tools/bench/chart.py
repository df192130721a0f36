"""tools/bench/run's chart: receive rate at full speed, and CPU time per packet
and loss at the fixed offered loads. Usage: chart.py RESULTS.tsv OUT.png"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
full = [r for r in rows if r[1] == "0"]
loads = sorted({r[1] for r in rows if r[1] != "0"}, key=float)
cases = [c for c in ["c-ref", "inline", "inline-count", "count", "pcap"] if any(r[0] == c for r in rows)]
colors = {"limit": "#888888", "c-ref": "#4c72b0", "c-ref-spin": "#6d8fc7", "c-ref-busy": "#9db3dd", "inline": "#dd8452", "inline-count": "#8172b3",
          "count": "#55a868", "pcap": "#c44e52"}

figure, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.8))
left.bar([r[0] for r in full], [float(r[2]) for r in full], color=[colors.get(r[0], "#999") for r in full])
for index, r in enumerate(full):
    left.text(index, float(r[2]), r[2], ha="center", va="bottom")
left.set_title("Maximum receive rate (median of 1 s samples)")
left.set_ylabel("Mpps")

width = 0.8 / len(cases)
for offset, case in enumerate(cases):
    xs, cost, lost = [], [], []
    for position, load in enumerate(loads):
        match = [r for r in rows if r[0] == case and r[1] == load]
        if match:
            xs.append(position + (offset - (len(cases) - 1) / 2) * width)
            cost.append(float(match[0][6]) if match[0][6] not in ("-", "") else 0.0)
            sent = int(match[0][3] or 0)
            lost.append(100.0 * int(match[0][5] or 0) / sent if sent else 0.0)
    middle.bar(xs, cost, width, label=case, color=colors[case])
    right.bar(xs, lost, width, label=case, color=colors[case])
for axes, title, unit in ((middle, "Receiver CPU time per packet (all its threads)", "ns/packet"), (right, "Packets lost", "% of sent")):
    axes.set_xticks(range(len(loads)))
    axes.set_xticklabels([f"{load} Mpps offered" for load in loads])
    axes.set_title(title)
    axes.set_ylabel(unit)
    axes.legend()
figure.tight_layout()
figure.savefig(sys.argv[2], dpi=100)
