#!/usr/bin/env python3
"""Summarise a bench/gpu/run.sh output folder into results.json and results.md.

Reads OUT/phases.tsv, OUT/probe.txt, OUT/BUILD.txt, OUT/raw/go-*.json
(tinyclip bench distill --json), OUT/raw/torch-*.json
(torch_distill_step.py), OUT/raw/tests-*.txt (go test -v output) and
OUT/raw/largest-*.txt. Only the standard library is used.
"""
import argparse
import glob
import json
import os
import re


def read(path, default=""):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return default


def load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def phases(out):
    rows = []
    for i, line in enumerate(read(os.path.join(out, "phases.tsv")).splitlines()):
        parts = line.split("\t")
        if i == 0 or len(parts) < 3:
            continue
        rows.append({"phase": parts[0], "rc": int(parts[1]), "seconds": int(parts[2]),
                     "note": parts[3].strip() if len(parts) > 3 else ""})
    return rows


TEST_LINE = re.compile(r"^\s*--- (PASS|FAIL|SKIP): (\S+) \(([\d.]+)s\)")


def tests(out):
    res = []
    for path in sorted(glob.glob(os.path.join(out, "raw", "tests-*.txt"))):
        group = os.path.basename(path)[len("tests-"):-len(".txt")]
        text = read(path)
        for line in text.splitlines():
            m = TEST_LINE.match(line)
            if m:
                res.append({"group": group, "test": m.group(2), "result": m.group(1), "seconds": float(m.group(3))})
        if "panic:" in text or "test timed out" in text:
            res.append({"group": group, "test": "(binary)", "result": "FAIL",
                        "seconds": 0.0, "note": "panic or timeout; see raw/" + os.path.basename(path)})
    return res


def runs(out):
    go, torch = {}, {}
    for path in glob.glob(os.path.join(out, "raw", "*.json")):
        name = os.path.basename(path)[:-5]
        d = load_json(path)
        if d is None:
            continue
        if name.startswith("go-"):
            go[(d.get("batch"), d.get("precision"))] = d
        elif name.startswith("torch-"):
            key = (d.get("batch"), d.get("precision") + ("" if d.get("trim_text") else "-notrim"))
            torch[key] = d
    return go, torch


def fmt(x, digits=1):
    return "—" if x is None else f"{x:.{digits}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--teacher", default="ViT-B-32")
    ap.add_argument("--student", default="TinyCLIP-ViT-40M-32-Text-19M")
    ap.add_argument("--mode", default="device")
    ap.add_argument("--elapsed", type=int, default=0)
    a = ap.parse_args()
    out = a.out
    go, torch = runs(out)
    largest, stopped = {}, {}
    for p in ("bf16", "fp32"):
        s = read(os.path.join(out, "raw", f"largest-{p}.txt")).strip().split(" ", 1)
        if s[0].isdigit():
            largest[p] = int(s[0])
            stopped[p] = s[1] if len(s) > 1 else ""
    ph = phases(out)
    ts = tests(out)
    device = next((d.get("device") for d in torch.values() if d.get("device")), None)
    go_dev = next((d.get("device") for d in go.values()), None)
    plugin = next((d.get("plugin") for d in go.values() if d.get("plugin")), None)
    smoke = load_json(os.path.join(out, "raw", "smoke.json")) or load_json(os.path.join(out, "raw", "smoke-path.json"))

    rows = []
    keys = [(a.batch, "fp32"), (a.batch, "bf16")]
    for p in ("bf16", "fp32"):
        if largest.get(p, a.batch) > a.batch:
            keys.append((largest[p], p))
    for b, p in keys:
        g = go.get((b, p))
        t = torch.get((b, p))
        tb = b
        if t is None and (b // 2, p) in torch and b != a.batch:  # torch ran out of memory at b
            t, tb = torch[(b // 2, p)], b // 2
        row = {"batch": b, "precision": p, "largest": b != a.batch,
               "go_samples_per_s": g and g.get("samples_per_s"), "go_step_ms": g and g.get("step_ms"),
               "go_first_step_ms": g and g.get("first_step_ms"),
               "torch_batch": tb if t else None,
               "torch_samples_per_s": t and t.get("samples_per_second"), "torch_step_ms": t and t.get("ms_per_step_median"),
               "torch_peak_gib": t and t.get("peak_memory_gib")}
        if row["go_samples_per_s"] and row["torch_samples_per_s"]:
            row["ratio"] = row["go_samples_per_s"] / row["torch_samples_per_s"]
        rows.append(row)
    extra = []
    for (b, p), t in sorted(torch.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        if (b, p) not in {(r["torch_batch"], r["precision"]) for r in rows}:
            extra.append({"batch": b, "precision": p, "samples_per_s": t.get("samples_per_second"),
                          "step_ms": t.get("ms_per_step_median")})
    goal = None
    for r in rows:
        if r["batch"] == a.batch and r["precision"] == "bf16" and r.get("ratio") is not None:
            goal = {"bf16_ratio": r["ratio"], "target": 0.8, "met": r["ratio"] >= 0.8}

    res = {"mode": a.mode, "teacher": a.teacher, "student": a.student, "gpu": device, "go_device": go_dev,
           "plugin": plugin, "smoke_ok": smoke is not None, "elapsed_s": a.elapsed, "build": read(os.path.join(out, "BUILD.txt")),
           "throughput": rows, "torch_extra": extra, "largest_batch": largest, "search_stopped": stopped, "goal": goal,
           "split": {f"{b}-{p}": go[(b, p)].get("split_ms") for (b, p) in go if go[(b, p)].get("split_ms")},
           "data": {f"{b}-{p}": go[(b, p)].get("data") for (b, p) in go if go[(b, p)].get("data", {}).get("batches")},
           "tests": ts, "phases": ph}
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(res, f, indent=2)

    md = []
    md.append(f"### Distillation step: {a.teacher} → {a.student} (random weights)\n")
    md.append(f"GPU: {device or go_dev or '?'}; tinyclip backend plugin: `{plugin or '?'}`; mode `{a.mode}`; "
              f"script time {a.elapsed} s.\n")
    md.append("| batch | precision | tinyclip samples/s | step ms | first step (compile) s | PyTorch samples/s | step ms | tinyclip / PyTorch |")
    md.append("|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        b = f"{r['batch']}" + (" (largest)" if r["largest"] else "")
        tb = "" if r["torch_batch"] in (None, r["batch"]) else f" (at {r['torch_batch']})"
        first = None if r["go_first_step_ms"] is None else r["go_first_step_ms"] / 1000
        md.append(f"| {b} | {r['precision']} | {fmt(r['go_samples_per_s'])} | {fmt(r['go_step_ms'])} | {fmt(first)} | "
                  f"{fmt(r['torch_samples_per_s'])}{tb} | {fmt(r['torch_step_ms'])} | {fmt(r.get('ratio'), 2)} |")
    if extra:
        md.append("\nPyTorch, other settings (amp = the official float16 autocast with GradScaler; -notrim = text towers over all 77 positions):\n")
        md.append("| batch | precision | samples/s | step ms |")
        md.append("|---:|---|---:|---:|")
        for e in extra:
            md.append(f"| {e['batch']} | {e['precision']} | {fmt(e['samples_per_s'])} | {fmt(e['step_ms'])} |")
    for p, why in stopped.items():
        md.append(f"\nLargest {p} batch found: {largest[p]}; the doubling search stopped: {why}.")
    if goal:
        md.append(f"\nGoal (bf16 ≥ 0.8× PyTorch at batch {a.batch}): {goal['bf16_ratio']:.2f}× — {'met' if goal['met'] else 'NOT met'}.")
    if res["split"]:
        md.append("\nStep split (ms; student forward/backward and optimizer are differences of separately compiled graphs):\n")
        parts = ["data", "teacher", "student_forward", "student_backward", "optimizer"]
        md.append("| run | " + " | ".join(parts) + " |")
        md.append("|---|" + "---:|" * len(parts))
        for k, s in sorted(res["split"].items()):
            md.append(f"| {k} | " + " | ".join(fmt(s.get(p)) for p in parts) + " |")
    if res["data"]:
        md.append("\nInput pipeline (JPEG decode + RandomResizedCrop + tokenize):\n")
        for k, d in sorted(res["data"].items()):
            md.append(f"- {k}: {fmt(d.get('images_per_s'))} images/s with {d.get('workers')} workers ({d.get('source')})")
    md.append("\nTests (test binary, TINYCLIP_BACKEND = the backend above):\n")
    if ts:
        md.append("| test | result | s |")
        md.append("|---|---|---:|")
        for t in ts:
            md.append(f"| {t['test']} | {t['result']} | {t['seconds']:.1f} |")
    else:
        md.append("(no test output)")
    md.append("\nPhases:\n")
    md.append("| phase | exit | s | note |")
    md.append("|---|---:|---:|---|")
    for p in ph:
        note = p["note"] if p["rc"] != 0 else ""
        md.append(f"| {p['phase']} | {p['rc']} | {p['seconds']} | {note[:160].replace('|', '/')} |")
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
