#!/usr/bin/env python3
"""Summarises a study of vmoe runs over seeds (docs/experiments.md): per arm, the test accuracy
curve (eval/accuracy of each run's metrics.jsonl) as mean and spread over seeds, the final test
accuracy and loss (mean, sample standard deviation, min, max) and the training time; writes
OUT.csv (curves), OUT.md (table) and OUT.png (gnuplot, mean curves with min-max bands).

An arm is "LABEL=DIR_PATTERN[@STEP_OFFSET]": DIR_PATTERN holds {seed}; a run that continues
another one from step S gives @S so that its curve starts there.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys


def read_run(directory):
    """(step, accuracy, loss) of every evaluation, and the training seconds, of one run."""
    path = os.path.join(directory, "metrics.jsonl")
    if not os.path.exists(path):
        sys.exit(f"summarize.py: error: {path} does not exist (has the run finished?)")
    evals, seconds = [], None
    with open(path) as f:
        for n, line in enumerate(f, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"summarize.py: error: {path}:{n}: not JSON ({e})")
            if "eval/accuracy" in row:
                evals.append((int(row["step"]), row["eval/accuracy"], row["eval/loss"]))
            if "train/seconds" in row:
                seconds = row["train/seconds"]
    if not evals:
        sys.exit(f"summarize.py: error: {path} has no eval/accuracy rows")
    return evals, seconds


def spread(values):
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std, min(values), max(values)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output prefix (OUT.csv, OUT.md, OUT.png)")
    parser.add_argument("--title", default="")
    parser.add_argument("--arm", action="append", required=True, help="LABEL=DIR_PATTERN[@OFFSET]")
    parser.add_argument("--seeds", nargs="+", required=True)
    args = parser.parse_args()

    arms = []
    for spec in args.arm:
        label, _, rest = spec.partition("=")
        pattern, _, offset = rest.partition("@")
        if not label or "{seed}" not in pattern:
            sys.exit(f"summarize.py: error: --arm '{spec}' must be LABEL=DIR_PATTERN with {{seed}}")
        runs = [read_run(pattern.format(seed=s)) for s in args.seeds]
        arms.append((label, runs, int(offset or 0)))

    rows = ["| arm | final test accuracy (%) | spread (min-max) | test loss | train time (s) |",
            "|---|---|---|---|---|"]
    with open(args.out + ".csv", "w") as csv:
        csv.write("arm,step,accuracy_mean,accuracy_min,accuracy_max,seeds\n")
        for index, (label, runs, offset) in enumerate(arms):
            steps = sorted(set.intersection(*[{s for s, _, _ in evals} for evals, _ in runs]))
            for step in steps:
                acc = [a for evals, _ in runs for s, a, _ in evals if s == step]
                mean, _, lo, hi = spread(acc)
                csv.write(f"{index},{step + offset},{mean},{lo},{hi},{len(acc)}\n")
            final = [evals[-1] for evals, _ in runs]
            acc = spread([100 * a for _, a, _ in final])
            loss = spread([l for _, _, l in final])
            secs = [t for _, t in runs if t is not None]
            time = f"{statistics.fmean(secs):.0f}" if secs else "-"
            rows.append(f"| {label} | {acc[0]:.2f} ± {acc[1]:.2f} | {acc[2]:.2f}-{acc[3]:.2f} | "
                        f"{loss[0]:.4f} ± {loss[1]:.4f} | {time} |")
    table = "\n".join(rows) + f"\n\n(mean ± sample standard deviation over seeds {' '.join(args.seeds)})\n"
    with open(args.out + ".md", "w") as f:
        f.write(table)
    print(table)

    plots = []
    for index, (label, _, _) in enumerate(arms):
        data = f"'{args.out}.csv' using ($1=={index}?$2:1/0):4:5"
        plots.append(f"{data} with filledcurves notitle fs transparent solid 0.15 lc {index + 1}")
        plots.append(f"'{args.out}.csv' using ($1=={index}?$2:1/0):(100*$3) with linespoints "
                     f"lc {index + 1} pt 7 ps 0.5 title '{label}'")
    # The band is in fractions; draw it in percent as the mean.
    plots = [p.replace(":4:5", ":(100*$4):(100*$5)") for p in plots]
    script = "\n".join([
        "set terminal pngcairo size 900,560 font ',10'",
        f"set output '{args.out}.png'",
        f"set title '{args.title}'",
        "set xlabel 'training step'", "set ylabel 'test accuracy (%)'",
        "set key bottom right", "set grid", "set datafile separator ','",
        "plot " + ", \\\n  ".join(plots),
    ])
    try:
        subprocess.run(["gnuplot"], input=script, text=True, check=True)
        print(f"written: {args.out}.png")
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"summarize.py: warning: no plot ({e}); the table and CSV are written", file=sys.stderr)


if __name__ == "__main__":
    main()
