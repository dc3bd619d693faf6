#!/usr/bin/env python3
"""Summarises launch/studies/router_study.sh (docs/experiments.md): per training length, a
table of every arm's final test accuracy (mean, sample standard deviation, min-max over seeds),
test loss, forward GFLOPs per image (`vmoe plan`), the runs' own training time and the
benchmarked step time (router_bench.sh); and two plots, test accuracy against GFLOPs per image
and against training time (benchmarked step time x steps when measured, else the runs' own),
one series per training length.
Writes OUT.md, OUT_flops.png and OUT_time.png. Arms or lengths whose runs are not all finished
are reported as missing, not averaged over fewer seeds.
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from summarize import spread  # noqa: E402  (same folder)

LABELS = {
    "dense": "ViT-Ti (dense)",
    "every2": "V-MoE-Ti E8 k2 Every-2",
    "last1": "V-MoE-Ti E8 k2 Last-1",
    "e4": "V-MoE-Ti E4 k2",
    "e16": "V-MoE-Ti E16 k2",
    "k1": "V-MoE-Ti E8 k1",
    "bpr_c05": "V-MoE-Ti capacity 0.5, BPR",
    "vanilla_c05": "V-MoE-Ti capacity 0.5, vanilla",
    "dropless": "V-MoE-Ti dropless top-2",
    "experts_choice": "Experts Choice, capacity 2",
    "soft": "Soft MoE, 13 slots per expert",
    "dense_reg": "ViT-Ti (dense), regularised",
    "every2_reg": "V-MoE-Ti E8 k2, regularised",
}


def final_eval(directory):
    """(accuracy, loss, train seconds) of a finished run (its metrics end with the final
    evaluation, the one row with train/seconds), or None."""
    path = os.path.join(directory, "metrics.jsonl")
    if not os.path.exists(path):
        return None
    last, seconds = None, None
    with open(path) as f:
        for n, line in enumerate(f, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"router_summary.py: error: {path}:{n}: not JSON ({e})")
            if "eval/accuracy" in row:
                last = (row["eval/accuracy"], row["eval/loss"])
            if "train/seconds" in row:
                seconds = row["train/seconds"]
    return None if last is None or seconds is None else (last[0], last[1], seconds)


def arm_record(study, arm, kind):
    """configs/ARM.KIND.json of the study (KIND: plan, bench) as a dict, None when absent."""
    path = os.path.join(study, "configs", f"{arm}.{kind}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def gflops_per_image(study, arm):
    plan = arm_record(study, arm, "plan")
    return None if plan is None else plan["flops"]["forward_gflops_per_image"]


def bench_step_ms(study, arm):
    bench = arm_record(study, arm, "bench")
    return None if bench is None else bench["step_ms"]["median"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output prefix")
    parser.add_argument("--study", required=True, help="router_study.sh's output folder")
    parser.add_argument("--epochs", nargs="+", required=True)
    parser.add_argument("--arms", nargs="+", required=True)
    parser.add_argument("--seeds", nargs="+", required=True)
    parser.add_argument("--steps-per-epoch", type=int, default=469)
    args = parser.parse_args()

    text, points, missing = [], {}, []
    for ep in args.epochs:
        text += [f"### {ep} epoch{'s' if ep != '1' else ''}", "",
                 "| arm | test accuracy (%) | spread (min-max) | test loss | GFLOPs/image | "
                 "step (ms) | train time (s) |", "|---|---|---|---|---|---|---|"]
        for arm in args.arms:
            runs = [final_eval(os.path.join(args.study, f"e{ep}", f"{arm}_s{s}"))
                    for s in args.seeds]
            if any(r is None for r in runs):
                missing.append(f"{arm} at {ep} epochs")
                continue
            acc = spread([100 * r[0] for r in runs])
            loss = spread([r[1] for r in runs])
            secs = [r[2] for r in runs if r[2] is not None]
            time = sum(secs) / len(secs) if secs else float("nan")
            flops = gflops_per_image(args.study, arm)
            flops_text = f"{flops:.4f}" if flops is not None else "-"
            step = bench_step_ms(args.study, arm)
            step_text = f"{step:.0f}" if step is not None else "-"
            if step is not None:  # the plot's time: benchmarked, not what ran beside the run
                time = step * int(ep) * args.steps_per_epoch / 1000
            text.append(f"| {LABELS.get(arm, arm)} | {acc[0]:.2f} ± {acc[1]:.2f} | "
                        f"{acc[2]:.2f}-{acc[3]:.2f} | {loss[0]:.4f} ± {loss[1]:.4f} | "
                        f"{flops_text} | {step_text} | {sum(secs) / max(len(secs), 1):.0f} |")
            points.setdefault(ep, []).append((arm, flops, time, acc))
        text += ["", f"(mean ± sample standard deviation over seeds {' '.join(args.seeds)})", ""]
    if missing:
        text += ["Not finished: " + ", ".join(missing) + ".", ""]
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(text))
    print("\n".join(text))

    for axis, column, xlabel in (("flops", 1, "forward GFLOPs per image"),
                                 ("time", 2, "training time (s, benchmarked steps)")):
        data = f"{args.out}_{axis}.dat"
        with open(data, "w") as f:
            for index, ep in enumerate(points):
                for arm, flops, time, acc in points[ep]:
                    x = (flops, time)[column - 1]
                    if x is not None:
                        label = arm.replace("_", "-")  # gnuplot reads _ as a subscript
                        f.write(f"{index} {x} {acc[0]} {acc[2]} {acc[3]} {label}\n")
        plots = []
        for index, ep in enumerate(points):
            sel = f"'{data}' using ($1=={index}?$2:1/0):3:4:5"
            title = f"{ep} epoch" + ("" if ep == "1" else "s")
            plots.append(f"{sel} with yerrorbars lc {index + 1} pt 7 ps 0.8 title '{title}'")
            plots.append(f"'{data}' using ($1=={index}?$2:1/0):3:6 with labels offset 0.6,0.4 "
                         f"left font ',7' tc lt {index + 1} notitle")
        script = "\n".join([
            "set terminal pngcairo size 1000,620 font ',10'",
            f"set output '{args.out}_{axis}.png'",
            f"set title 'Fashion-MNIST: test accuracy against {xlabel} (mean, min-max of seeds)'",
            f"set xlabel '{xlabel}'", "set ylabel 'test accuracy (%)'", "set key top left",
            "set grid", "plot " + ", \\\n  ".join(plots),
        ])
        try:
            subprocess.run(["gnuplot"], input=script, text=True, check=True)
            print(f"written: {args.out}_{axis}.png")
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"router_summary.py: warning: no plot ({e})", file=sys.stderr)


if __name__ == "__main__":
    main()
