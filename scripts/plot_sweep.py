#!/usr/bin/env python3
"""Draws the scaling sweeps that scripts/sweep.sh recorded as SVG files.

    scripts/plot_sweep.py [INPUT] [--out-dir DIR]
    scripts/plot_sweep.py [INPUT] --markdown

INPUT is the JSON lines file sweep.sh appends to (default docs/scaling.jsonl);
DIR is where the images go (default: INPUT's directory). For each sweep in
INPUT it writes DIR/scaling-<sweep>.svg (scaling-connections.svg,
scaling-value-size.svg, scaling-pipeline.svg): three panels side by side,
throughput (requests/s), p99 latency (ms) and server CPU per request
(microseconds, summed over the four replicas), each against the swept
parameter on a log-scale x axis, with one line per operation (QUORUM put,
QUORUM get). A y axis is logarithmic when its values span more than 20x,
linear from zero otherwise. A point whose run had errors is drawn hollow and
labelled with how many; a run with no result is left out and named below the
panels.

With --markdown it writes no image and prints one Markdown table per sweep
instead (each point's put and get: throughput, p50, p99, server and bench
CPU per request, the cores the cluster and bench kept busy, errors, WAL
records per fdatasync and checkpoints, puts stamped again after a "stale"
answer, largest replica RSS), as
docs/scaling.md quotes them.

When INPUT holds several runs of the same point, the last line wins. The
output depends only on INPUT: the same input gives the same bytes. Python 3
standard library only.
"""

import json
import math
import os
import sys

SWEEPS = {
    "connections": ("client connections", "connections (log scale)"),
    "value-size": ("value size", "value size (log scale)"),
    "pipeline": ("requests in flight per connection", "--pipeline (log scale)"),
}
OPS = [("put", "QUORUM put", "circle"), ("get", "QUORUM get", "square")]
# Line colours: the replicas' defaults first, then each other REPLICA_ARGS
# (dashed), in sorted order; one colour per operation in each.
COLOURS = [("#1f6fb4", "#d9730d"), ("#2a9d3a", "#8e44ad"), ("#7f7f7f", "#c0392b")]
PANELS = [
    ("throughput", "throughput (requests/s)"),
    ("p99", "p99 latency (ms)"),
    ("cpu", "server CPU per request (\u00b5s)"),
]

PANEL_W, PANEL_H = 300, 220  # plot area of one panel
LEFT, GAP, TOP, BOTTOM = 70, 85, 78, 62
WIDTH = LEFT + 3 * PANEL_W + 2 * GAP + 25
FONT = "font-family=\"Helvetica, Arial, sans-serif\""


def usage(code):
    (sys.stdout if code == 0 else sys.stderr).write(__doc__)
    sys.exit(code)


def load(path):
    """The last record for each (sweep, replica args, op, x), in file order."""
    records = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError as error:
                sys.exit("plot_sweep: %s line %d is not JSON: %s" % (path, number, error))
            key = (record["sweep"], record.get("replica_args", ""), record["op"], record["x"])
            records[key] = record
    return records


def figures(record):
    """(throughput, p99 ms, cpu us/request, errors) of one run, or None."""
    bench = record.get("bench")
    if not bench:
        return None
    operation = bench["operations"].get(record["op"])
    if not operation:
        return None
    cpu = (bench.get("cpu") or {}).get("cluster") or {}
    return {
        "throughput": operation["ops_per_sec"],
        "p99": operation["latency_us"]["p99"] / 1000.0,
        "cpu": cpu.get("us_per_request"),
        "errors": sum(operation["errors"].values()),
    }


def x_label(sweep, x):
    if sweep == "value-size":
        for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
            if x >= size and x % size == 0:
                return "%d %s" % (x // size, unit)
        return "%d B" % x
    return str(x)


def number(value):
    """A tick label: 1.5k, 20k, 2M, 0.5, 12."""
    if value == 0:
        return "0"
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return trim("%.1f" % (value / limit)) + suffix
    if abs(value) >= 1:
        return trim("%.1f" % value)
    return trim("%.3f" % value)


def trim(text):
    return text.rstrip("0").rstrip(".") if "." in text else text


class Axis:
    """Maps values to [0, 1] on a log or linear scale, with ticks."""

    def __init__(self, values):
        values = [v for v in values if v is not None and v > 0]
        low, high = (min(values), max(values)) if values else (1.0, 10.0)
        self.log = high / low > 20
        if self.log:
            self.low = 10 ** math.floor(math.log10(low))
            self.high = 10 ** math.ceil(math.log10(high))
            if self.high == self.low:
                self.high *= 10
            decades = round(math.log10(self.high / self.low))
            steps = (1,) if decades > 3 else (1, 2, 5)
            self.ticks = []
            for exponent in range(round(math.log10(self.low)), round(math.log10(self.high)) + 1):
                for step in steps:
                    tick = step * 10.0 ** exponent
                    if self.low <= tick * 1.0000001 and tick <= self.high * 1.0000001:
                        self.ticks.append(tick)
        else:
            self.low = 0.0
            raw = high / 4
            magnitude = 10 ** math.floor(math.log10(raw))
            step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
            self.high = step * math.ceil(high / step)
            if self.high <= high:
                self.high += step
            self.ticks = [i * step for i in range(int(round(self.high / step)) + 1)]

    def at(self, value):
        if self.log:
            return (math.log10(value) - math.log10(self.low)) / (
                math.log10(self.high) - math.log10(self.low))
        return (value - self.low) / (self.high - self.low)


def f(value):
    """Coordinates with one decimal, so the bytes do not depend on float noise."""
    return "%.1f" % value


def escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def marker(shape, x, y, colour, hollow):
    fill = "#ffffff" if hollow else colour
    if shape == "circle":
        return '<circle cx="%s" cy="%s" r="4" fill="%s" stroke="%s" stroke-width="1.5"/>' % (
            f(x), f(y), fill, colour)
    return '<rect x="%s" y="%s" width="8" height="8" fill="%s" stroke="%s" stroke-width="1.5"/>' % (
        f(x - 4), f(y - 4), fill, colour)


def draw(sweep, records):
    title, x_title = SWEEPS[sweep]
    mine = {key: record for key, record in records.items() if key[0] == sweep}
    xs = sorted({key[3] for key in mine})
    variants = sorted({key[1] for key in mine})[:len(COLOURS)]
    series = []  # (label, colour, shape, dashed, [(x, values)])
    missing = []
    for index, args in enumerate(variants):
        for (op, name, shape), colour in zip(OPS, COLOURS[index]):
            points = []
            for x in xs:
                record = mine.get((sweep, args, op, x))
                if record is None:
                    continue
                values = figures(record)
                if values is None:
                    missing.append("%s%s at %s (exit %s%s)" % (
                        op, ", " + args if args else "", x_label(sweep, x), record.get("exit_code"),
                        ": " + record["stderr"] if record.get("stderr") else ""))
                    continue
                points.append((x, values))
            if points:
                label = name + (", replicas with " + args if args else "")
                series.append((label, colour, shape, bool(args), points))
    settings = {}
    for record in mine.values():
        settings = (record.get("bench") or {}).get("settings") or settings
    runs = sorted({r.get("run", "") for r in mine.values()})
    loads = sorted((r.get("time", ""), r.get("loadavg_before", ""), r.get("loadavg_after", ""))
                   for r in mine.values())
    legend_y = TOP + PANEL_H + BOTTOM - 8
    legend_rows = (len(series) + 1) // 2
    notes_y = legend_y + 18 * legend_rows + 4
    height = notes_y + 16 * (1 + len(missing)) + 6

    out = []
    out.append('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" %s font-size="12">'
               % (WIDTH, height, WIDTH, height, FONT))
    out.append('<rect width="100%" height="100%" fill="#ffffff"/>')
    out.append('<text x="%d" y="24" font-size="16" font-weight="bold" fill="#111111">ringkv: cost against %s</text>'
               % (LEFT, escape(title)))
    others = {
        "connections": "16-byte values, pipeline 1",
        "value-size": "32 connections, pipeline 1",
        "pipeline": "32 connections, 16-byte values",
    }[sweep]
    subtitle = "QUORUM, 4 replicas, %s; %s s measured per point; run %s" % (
        others, settings.get("seconds", "?"), ", ".join(runs))
    out.append('<text x="%d" y="44" fill="#444444">%s</text>' % (LEFT, escape(subtitle)))
    if loads:
        out.append('<text x="%d" y="60" fill="#444444">load average (1, 5, 15 min) before the first point %s, after the last %s: shared 2-core machine, noisy</text>'
                   % (LEFT, escape(loads[0][1]), escape(loads[-1][2])))

    x_axis_span = (math.log10(xs[0]), math.log10(xs[-1])) if len(xs) > 1 else (0.0, 1.0)

    def x_at(x):
        low, high = x_axis_span
        if high == low:
            return 0.5
        return 0.04 + 0.92 * (math.log10(x) - low) / (high - low)

    for index, (key, label) in enumerate(PANELS):
        left = LEFT + index * (PANEL_W + GAP)
        axis = Axis([values[key] for *_, points in series for _, values in points])
        out.append('<g>')
        out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="#fbfbfb" stroke="#999999"/>'
                   % (left, TOP, PANEL_W, PANEL_H))
        for tick in axis.ticks:
            y = TOP + PANEL_H * (1 - axis.at(tick))
            out.append('<line x1="%d" y1="%s" x2="%d" y2="%s" stroke="#e2e2e2"/>'
                       % (left, f(y), left + PANEL_W, f(y)))
            out.append('<text x="%d" y="%s" text-anchor="end" fill="#333333">%s</text>'
                       % (left - 5, f(y + 4), number(tick)))
        for x in xs:
            px = left + PANEL_W * x_at(x)
            out.append('<line x1="%s" y1="%d" x2="%s" y2="%d" stroke="#e2e2e2"/>'
                       % (f(px), TOP, f(px), TOP + PANEL_H))
            out.append('<text x="%s" y="%d" text-anchor="middle" fill="#333333">%s</text>'
                       % (f(px), TOP + PANEL_H + 16, escape(x_label(sweep, x))))
        out.append('<text x="%s" y="%d" text-anchor="middle" fill="#111111">%s</text>'
                   % (f(left + PANEL_W / 2), TOP + PANEL_H + 34, escape(x_title)))
        y_title = label + (" (log scale)" if axis.log else "")
        out.append('<text transform="translate(%d %s) rotate(-90)" text-anchor="middle" fill="#111111">%s</text>'
                   % (left - 48, f(TOP + PANEL_H / 2), escape(y_title)))
        for _, colour, shape, dashed, points in series:
            coords = [(left + PANEL_W * x_at(x), TOP + PANEL_H * (1 - axis.at(values[key])), values)
                      for x, values in points if values[key] is not None and values[key] > 0]
            if len(coords) > 1:
                out.append('<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>'
                           % (colour, ' stroke-dasharray="6 4"' if dashed else "",
                              " ".join("%s,%s" % (f(px), f(py)) for px, py, _ in coords)))
            for px, py, values in coords:
                out.append(marker(shape, px, py, colour, values["errors"] > 0))
                if values["errors"] > 0:
                    out.append('<text x="%s" y="%s" text-anchor="middle" font-size="10" fill="%s">%d err</text>'
                               % (f(px), f(py - 8), colour, values["errors"]))
        out.append('</g>')

    for index, (name, colour, shape, dashed, _) in enumerate(series):
        x = LEFT + (index % 2) * 470
        y = legend_y + 18 * (index // 2)
        out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/>'
                   % (x, y, x + 28, y, colour, ' stroke-dasharray="6 4"' if dashed else ""))
        out.append(marker(shape, x + 14, y, colour, False))
        out.append('<text x="%d" y="%d" fill="#111111">%s</text>' % (x + 36, y + 4, escape(name)))
    out.append('<text x="%d" y="%d" fill="#444444">hollow marker: the run had errors (count above it). CPU: user + system time of the four replicas over the measured phase, per request.</text>'
               % (LEFT, notes_y))
    for number_, text in enumerate(missing):
        out.append('<text x="%d" y="%d" fill="#b00020">no result: %s</text>'
                   % (LEFT, notes_y + 16 * (number_ + 1), escape(text)))
    out.append('</svg>')
    return "\n".join(out) + "\n"


def ms(us):
    return trim("%.2f" % (us / 1000.0)) if us < 10000 else "%.0f" % (us / 1000.0)


def markdown(records):
    """One Markdown table per sweep and REPLICA_ARGS, rows in x then op order."""
    lines = []
    groups = sorted({(key[0], key[1]) for key in records},
                    key=lambda g: (list(SWEEPS).index(g[0]) if g[0] in SWEEPS else 99, g[1]))
    for sweep, args in groups:
        title = SWEEPS.get(sweep, (sweep,))[0]
        lines.append("#### %s%s" % (title, ", replicas with `%s`" % args if args else ""))
        lines.append("")
        lines.append("| %s | op | ops/s | p50 ms | p99 ms | server CPU µs/req | bench CPU µs/req "
                     "| cores busy | errors | WAL records/fdatasync | checkpoints | re-stamped puts | largest replica RSS MiB |"
                     % ("value" if sweep == "value-size" else sweep))
        lines.append("|" + "---|" * 13)
        keys = sorted((k for k in records if k[0] == sweep and k[1] == args),
                      key=lambda k: (k[3], [o[0] for o in OPS].index(k[2]) if k[2] in [o[0] for o in OPS] else 9))
        for key in keys:
            record = records[key]
            bench = record.get("bench")
            label = x_label(sweep, key[3])
            if not bench or key[2] not in bench["operations"]:
                lines.append("| %s | %s | no result (exit %s): %s |%s" % (
                    label, key[2], record.get("exit_code"), record.get("stderr", ""), " |" * 10))
                continue
            operation = bench["operations"][key[2]]
            latency = operation["latency_us"]
            cpu = bench["cpu"]
            busy = ((cpu["cluster"]["user_s"] + cpu["cluster"]["system_s"]
                     + cpu["bench"]["user_s"] + cpu["bench"]["system_s"]) / bench["duration_s"]
                    if bench.get("duration_s") else 0)
            errors = ", ".join("%d %s" % (n, kind) for kind, n in sorted(operation["errors"].items())) or "0"
            fill = record.get("fill")
            if fill and fill.get("failed"):
                errors += " (fill: %d of 256 failed)" % fill["failed"]
            wal = record.get("wal") or {}
            per_sync = "%.1f" % (wal["records"] / wal["fdatasyncs"]) if wal.get("fdatasyncs") else "-"
            rss = record.get("replica_rss_kib") or []
            stale = record.get("stale_write_retries")
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %.2f | %s | %s | %s | %s | %s |" % (
                label, key[2], "{:,.0f}".format(operation["ops_per_sec"]), ms(latency["p50"]),
                ms(latency["p99"]), "{:,.0f}".format(cpu["cluster"]["us_per_request"] or 0),
                "{:,.0f}".format(cpu["bench"]["us_per_request"] or 0), busy, errors, per_sync,
                wal.get("checkpoints", "-"), "-" if stale is None else "{:,}".format(stale),
                "%.0f" % (max(rss) / 1024.0) if rss else "-"))
        lines.append("")
    return "\n".join(lines)


def main(argv):
    args = list(argv)
    out_dir = None
    if "-h" in args or "--help" in args:
        usage(0)
    tables = "--markdown" in args
    if tables:
        args.remove("--markdown")
    if "--out-dir" in args:
        at = args.index("--out-dir")
        if at + 1 >= len(args):
            usage(2)
        out_dir = args[at + 1]
        del args[at:at + 2]
    if len(args) > 1 or any(a.startswith("-") for a in args):
        sys.stderr.write("usage: plot_sweep.py [INPUT] [--out-dir DIR | --markdown]\n")
        sys.exit(2)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = args[0] if args else os.path.join(root, "docs", "scaling.jsonl")
    if out_dir is None:
        out_dir = os.path.dirname(os.path.abspath(path))
    records = load(path)
    if tables:
        sys.stdout.write(markdown(records))
        return
    sweeps = [s for s in SWEEPS if any(key[0] == s for key in records)]
    if not sweeps:
        sys.exit("plot_sweep: no sweep in %s" % path)
    for sweep in sweeps:
        target = os.path.join(out_dir, "scaling-%s.svg" % sweep)
        with open(target, "w", newline="\n") as f:
            f.write(draw(sweep, records))
        print(target)


if __name__ == "__main__":
    main(sys.argv[1:])
