"""Draws BENCHMARKS.png from the JSON that `cargo bench --bench throughput -- --json FILE` writes:
records per second by scenario (log scale), ratios printed on the bars.

    target/venv-bench/bin/python benches/chart.py results.json BENCHMARKS.png
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    source, target = sys.argv[1], sys.argv[2]
    with open(source) as f:
        report = json.load(f)
    rows = [row for row in report["rows"] if row["unit"] == "msg/s"]
    names = [row["name"] for row in rows]
    values = [row["value"] for row in rows]
    colors = [
        "tab:orange" if "listener" in n or "KafkaTemplate" in n else "tab:gray" if "Python" in n else "tab:blue"
        for n in names
    ]
    fig, ax = plt.subplots(figsize=(11, 0.45 * len(rows) + 1.5))
    bars = ax.barh(names, values, color=colors)
    ax.set_xscale("log")
    ax.set_xlim(right=max(values) * 6)
    ax.invert_yaxis()
    ax.set_xlabel("records per second (log scale)")
    ax.set_title(f"kafka-runtime vs raw rdkafka vs Python — {report['broker']}, {report['machine']}", fontsize=9)
    for bar, row in zip(bars, rows):
        label = f" {row['value']:,.0f}"
        if row.get("ratio"):
            label += f"  ({row['ratio'][0]} {row['ratio'][1]:.2f})"
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, label, va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(target, dpi=110)


if __name__ == "__main__":
    main()
