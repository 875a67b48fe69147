#!/usr/bin/env python3
"""Paired timings of our engine alone: feeds the bench/compare runner
(`go build -o BIN ./bench/compare/ours`, one binary per commit to compare)
directly, without ORT or torch, alternating the variants round by round.

  bench/compare/pair.py --model DIR [--tower image|text] [--precision fp32|bf16]
      [--threads 2] [--rounds 16] [--settle 0.3[,0]] [--spin 0[,50]] BIN [BIN2 ...]

Each variant is one (binary, settle, spin) combination; in every round each
variant sleeps `settle` seconds, then runs 1 warm-up + 3 timed calls of
batch 1 (as compare.mjs does) and the median is recorded. Prints the
median over rounds per variant and, for two variants, the median of the
per-round differences and how many rounds the second one was faster.
DIR is a model directory, e.g. bench/compare/.work/models/<name> after a
run.sh, or one written by `tinyclip init`. Needs ../shared's class names
(CLASSNAMES or SHARED)."""
import argparse, itertools, json, os, statistics, subprocess, sys, time

here = os.path.dirname(os.path.abspath(__file__))
p = argparse.ArgumentParser()
p.add_argument('--model', required=True)
p.add_argument('--tower', default='image', choices=['image', 'text'])
p.add_argument('--precision', default='fp32')
p.add_argument('--threads', type=int, default=2)
p.add_argument('--rounds', type=int, default=16)
p.add_argument('--settle', default='0.3')
p.add_argument('--spin', default='0')
p.add_argument('bins', nargs='+')
a = p.parse_args()
shared = os.environ.get('SHARED', os.path.join(here, '..', '..', '..', 'shared'))
env = {**os.environ, 'CLASSNAMES': os.environ.get('CLASSNAMES', os.path.join(shared, 'data/zeroshot/imagenet1k-classnames.txt'))}
variants = list(itertools.product(a.bins, [float(s) for s in a.settle.split(',')], [int(s) for s in a.spin.split(',')]))
procs = {b: subprocess.Popen([b], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True) for b in a.bins}

def ask(b, o):
    procs[b].stdin.write(json.dumps(o) + '\n')
    procs[b].stdin.flush()
    r = json.loads(procs[b].stdout.readline())
    if r.get('error'):
        sys.exit(f'{b}: {r["error"]}')
    return r

res = {v: [] for v in variants}
for r in range(a.rounds):
    for v in variants:
        b, settle, spin = v
        time.sleep(settle)
        o = ask(b, dict(op='run', model=a.model, tower=a.tower, batch=1, threads=a.threads, precision=a.precision,
                        iters=3, warmup=1, offset=r, spin_us=spin))
        res[v].append(o['ms'])
print(f'{a.tower} {a.precision}, batch 1, {a.threads} threads, {a.rounds} rounds, ms per item:')
for v in variants:
    print(f'  {os.path.basename(v[0])} settle {v[1]} s spin {v[2]} µs: median {statistics.median(res[v]):.2f}')
if len(variants) == 2:
    d = [y - x for x, y in zip(res[variants[0]], res[variants[1]])]
    print(f'  second − first: median {statistics.median(d):+.2f} ms, second faster in {sum(x < 0 for x in d)} of {len(d)} rounds')
