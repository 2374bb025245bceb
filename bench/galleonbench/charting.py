"""chart.png: the subject's time ratios (top) and peak-RSS / memory-return ratios
(bottom) against each peer, log scale; matplotlib when installed, else gnuplot
(chart.gp and chart-*.dat are kept next to it)."""
import os
import shutil
import subprocess

from .paths import log


def draw_chart(summary, allocs, subject, outdir, callgrind):
    """Two panels: time ratios per workload, and peak-RSS ratios per workload plus
    the memory-return figures (workload:metric) - subject / each peer, log scale."""
    if not subject:
        return None
    peers = [a.name for a in allocs if a.name != subject]
    trows = [(wn, "time") for wn, ws in summary.items() if any(ws["ratios"].get(n, {}).get("time") for n in peers)]
    mrows = [(wn, "rss") for wn, ws in summary.items() if any(ws["ratios"].get(n, {}).get("rss") for n in peers)]
    mrows += [(wn, k) for wn, ws in summary.items() for k in ws["mem_metrics"]]
    if not trows and not mrows:
        return None
    label = lambda wn, k: wn if k in ("time", "rss") else "%s:%s" % (wn, k.replace("_mb", ""))  # noqa: E731
    val = lambda wn, k, n: summary[wn]["ratios"].get(n, {}).get(k)  # noqa: E731
    png = os.path.join(outdir, "chart.png")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(2, 1, figsize=(max(10, max(len(trows), len(mrows)) * 0.9), 10))
        width = 0.8 / max(1, len(peers))
        for ax, rows, title in ((axes[0], trows, "time ratio"), (axes[1], mrows, "peak RSS / memory-return ratio")):
            for i, n in enumerate(peers):
                ax.bar([x + i * width for x in range(len(rows))], [val(w, k, n) or 0 for w, k in rows], width,
                       label="vs " + n)
            ax.axhline(1.0, color="black", linewidth=0.8)
            ax.set_yscale("log")
            ax.set_xticks([x + 0.4 - width / 2 for x in range(len(rows))])
            ax.set_xticklabels([label(w, k) for w, k in rows], rotation=30, ha="right")
            ax.set_title("%s %s vs peers (< 1 = %s better)" % (subject, title, subject))
            ax.legend()
        fig.tight_layout()
        fig.savefig(png, dpi=100)
        return png
    except ImportError:
        pass
    if not shutil.which("gnuplot"):
        log("WARNING: neither matplotlib nor gnuplot available: no chart")
        return None
    files = []
    for tag, rows in (("time", trows), ("mem", mrows)):
        dat = os.path.join(outdir, "chart-%s.dat" % tag)
        with open(dat, "w") as f:
            f.write("# %s ratios of %s vs: %s\n" % (tag, subject, " ".join(peers)))
            for w, k in rows:
                f.write("%s %s\n" % (label(w, k), " ".join("%.4f" % val(w, k, n) if val(w, k, n) else "NaN"
                                                            for n in peers)))
        files.append(dat)
    plot = lambda dat: ", ".join("'%s' using %d:xtic(1) title 'vs %s'" % (dat, 2 + i, n)  # noqa: E731
                                 for i, n in enumerate(peers))
    width = max(1100, 22 * max(len(trows), len(mrows)) * max(1, len(peers)))
    gp = os.path.join(outdir, "chart.gp")
    script = """set terminal pngcairo size %d,1000 noenhanced font ',9'
set output '%s'
set datafile missing 'NaN'
set multiplot layout 2,1
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set logscale y 2
set yrange [0.015625:16]
set ytics (0.015625, 0.03125, 0.0625, 0.125, 0.25, 0.5, 1, 2, 4, 8, 16)
set grid ytics
set xtics rotate by -35
set bmargin 7
set key top left horizontal
set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead lw 2 lc rgb 'black' front
set title '%s time ratio vs peers (%s cost / peer cost; below 1 = %s faster)'
plot %s
set title '%s peak RSS and memory-return ratios vs peers (below 1 = %s holds less memory)'
plot %s
unset multiplot
""" % (width, png, subject, subject, subject, plot(files[0]), subject, subject, plot(files[1]))
    for term in ("pngcairo", "png"):  # gnuplot-nox may lack cairo
        with open(gp, "w") as f:
            f.write(script.replace("pngcairo", term))
        r = subprocess.run(["gnuplot", gp], capture_output=True, text=True)
        if r.returncode == 0:
            return png
    log("WARNING: gnuplot failed: " + r.stderr[-500:])
    return None
