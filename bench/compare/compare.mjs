// Side-by-side benchmark of tinyclip (Go), ONNX Runtime (onnxruntime-node)
// and PyTorch on the same random weights; run by run.sh, which prepares the
// models and the runners. ORT runs in this process; PyTorch (one process per
// thread count, so OpenBLAS's own thread count matches) and tinyclip answer
// JSON lines on stdin/stdout. Every round measures every row with each tool
// in turn (ours, ORT, torch); a row's figure is the median over rounds of
// the per-round medians. Prints the table of design.md §4.5 (Markdown).
import ort from 'onnxruntime-node';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
  return acc;
}, []));
const work = args.work;
const rounds = +(args.rounds ?? 5);
const iters = +(args.iters ?? 5);
const warmup = +(args.warmup ?? 1);
const batches = (args.batch ?? '1,8').split(',').map(Number);
const threadList = (args.threads ?? '1,2').split(',').map(Number);
const only = args.only ? new RegExp(args.only) : null;
// Pause before every measurement (ms), so that the previous runtime's idle
// threads have gone to sleep: OpenBLAS (torch) and ORT spin for a while after
// a call, and on a 2-vCPU machine a spinning thread takes the core the next
// runtime's second thread needs.
const settle = +(args.settle ?? 300);
// --spin US adds rows of ours with tinyclip.SetSpinWait(US µs) (idle threads
// poll that long before sleeping, as ORT's pool does by default) for the
// multi-thread rows; 0 (default) measures only the default, sleeping pool.
const spinUs = +(args.spin ?? 0);
const pause = () => new Promise((resolve) => setTimeout(resolve, settle));
const peakFP32 = +(args['peak-fp32'] ?? 111.5); // GMAC/s per thread (design §4.2)
const peakBF16 = 2 * peakFP32;

const towers = [
  { name: 'ViT-8M/16 image', model: 'TinyCLIP-ViT-8M-16-Text-3M', tower: 'image', bf16: true },
  { name: 'ViT-40M/32 image', model: 'TinyCLIP-ViT-40M-32-Text-19M', tower: 'image', bf16: true },
  { name: 'ResNet-19M image', model: 'TinyCLIP-ResNet-19M-Text-19M', tower: 'image', bf16: false },
  { name: 'Text-3M', model: 'TinyCLIP-ViT-8M-16-Text-3M', tower: 'text', bf16: false },
  { name: 'Text-19M', model: 'TinyCLIP-ViT-40M-32-Text-19M', tower: 'text', bf16: false },
].filter((t) => !only || only.test(t.name));

// A line-oriented JSON runner process.
class Runner {
  constructor(name, cmd, argv, env) {
    this.name = name;
    this.proc = spawn(cmd, argv, { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'inherit'] });
    this.lines = readline.createInterface({ input: this.proc.stdout })[Symbol.asyncIterator]();
  }
  async ask(obj) {
    this.proc.stdin.write(JSON.stringify(obj) + '\n');
    const { value, done } = await this.lines.next();
    if (done) throw new Error(`${this.name} exited`);
    const res = JSON.parse(value);
    if (res.error) throw new Error(`${this.name}: ${res.error}`);
    return res;
  }
  close() { this.proc.stdin.end(); }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};

const classnames = fs.readFileSync(process.env.CLASSNAMES, 'utf8').trim().split('\n');
const ours = new Runner('ours', path.join(work, 'ours'), [], {});
const torch = Object.fromEntries(threadList.map((t) => [t, new Runner(`torch/${t}`, '/usr/bin/python3',
  [path.join(path.dirname(new URL(import.meta.url).pathname), 'torch_runner.py')],
  {
    OPENBLAS_NUM_THREADS: String(t), OMP_NUM_THREADS: String(t),
    // Debian's OpenBLAS, not the reference BLAS libblas.so.3 resolves to by
    // default; the machine's own OPENBLAS_CORETYPE=Haswell halves its speed.
    LD_LIBRARY_PATH: [process.env.TORCH_BLAS_DIR, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':'),
    OPENBLAS_CORETYPE: 'SkylakeX',
  })]));
const torchInfo = await torch[threadList[0]].ask({ op: 'info' });

// Token ids of all prompts for ORT (77 positions, as exported).
const prompts = classnames.map((c) => `a photo of a ${c}.`);
const ids77 = (await torch[threadList[0]].ask({ op: 'tokenize', texts: prompts })).ids;

const sessions = new Map();
async function session(file, threads) {
  const key = `${file}|${threads}`;
  if (!sessions.has(key)) {
    sessions.set(key, await ort.InferenceSession.create(file, {
      intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential',
    }));
  }
  return sessions.get(key);
}

function randn(n, seed) {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    s = (s * 1664525 + 1013904223) >>> 0; const u = (s + 1) / 4294967297;
    s = (s * 1664525 + 1013904223) >>> 0; const v = (s + 1) / 4294967297;
    const r = Math.sqrt(-2 * Math.log(u));
    out[i] = r * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
  return out;
}

async function runORT(t, batch, threads, offset) {
  const dir = path.join(work, 'models', t.model);
  const sess = await session(path.join(dir, `${t.tower}.onnx`), threads);
  const times = [];
  for (let i = 0; i < warmup + iters; i++) {
    let feeds;
    if (t.tower === 'image') {
      feeds = { pixel_values: new ort.Tensor('float32', randn(batch * 3 * 224 * 224, 7 + i), [batch, 3, 224, 224]) };
    } else {
      const data = new BigInt64Array(batch * 77);
      for (let j = 0; j < batch; j++) {
        const row = ids77[(offset + i * batch + j) % ids77.length];
        for (let k = 0; k < 77; k++) data[j * 77 + k] = BigInt(row[k]);
      }
      feeds = { input_ids: new ort.Tensor('int64', data, [batch, 77]) };
    }
    const start = process.hrtime.bigint();
    await sess.run(feeds);
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    if (i >= warmup) times.push(ms / batch);
  }
  return median(times);
}

// GMACs per item: images from the registry (tinyclip models --json), texts
// at the mean token count ours ran (the peers run 77 positions).
const imageGMACs = {};
for (const t of towers) {
  imageGMACs[t.model] ??= (await ours.ask({ op: 'macs', model: path.join(work, 'models', t.model) })).image_gmacs;
}
function textGMACs(model, n) {
  const cfg = JSON.parse(fs.readFileSync(path.join(work, 'models', model, 'config.json'), 'utf8'));
  const w = cfg.text_cfg.width, L = cfg.text_cfg.layers, e = cfg.embed_dim;
  const a = w, mlp = 4 * w;
  return (L * (n * 3 * a * w + 2 * n * n * a + n * a * w + 2 * n * mlp * w) + w * e) / 1e9;
}

const rows = [];
for (const t of towers) {
  for (const batch of batches) {
    for (const threads of threadList) {
      rows.push({ t, batch, threads, prec: 'fp32', spin: 0, ours: [], ort: [], torch: [], tokens: [] });
      if (t.bf16) rows.push({ t, batch, threads, prec: 'bf16', spin: 0, ours: [], ort: null, torch: null, tokens: [] });
      if (spinUs > 0 && threads > 1) {
        rows.push({ t, batch, threads, prec: 'fp32', spin: spinUs, ours: [], ort: null, torch: null, tokens: [] });
        if (t.bf16) rows.push({ t, batch, threads, prec: 'bf16', spin: spinUs, ours: [], ort: null, torch: null, tokens: [] });
      }
    }
  }
}

const started = new Date();
process.stderr.write(`${rows.length} rows × ${rounds} rounds, ${iters} timed calls each\n`);
for (let r = 0; r < rounds; r++) {
  for (const row of rows) {
    const { t, batch, threads, prec } = row;
    const offset = (r * 97) % classnames.length;
    const dir = path.join(work, 'models', t.model);
    await pause();
    const o = await ours.ask({ op: 'run', model: dir, tower: t.tower, batch, threads, precision: prec, iters, warmup, offset, spin_us: row.spin });
    if (o.precision !== prec) throw new Error(`ours ran ${o.precision}, asked ${prec}`);
    row.ours.push(o.ms);
    if (o.tokens) row.tokens.push(o.tokens);
    if (row.ort) { await pause(); row.ort.push(await runORT(t, batch, threads, offset)); }
    if (row.torch) await pause();
    if (row.torch) row.torch.push((await torch[threads].ask({ op: 'run', model: dir, tower: t.tower, batch, threads, iters, warmup, offset })).ms);
  }
  process.stderr.write(`round ${r + 1}/${rounds} done\n`);
}
ours.close();
Object.values(torch).forEach((p) => p.close());

const fp32 = (row) => rows.find((x) => x.t === row.t && x.batch === row.batch && x.threads === row.threads && x.prec === 'fp32' && x.spin === 0);
const f = (v, d = 2) => (v == null ? '—' : v.toFixed(d));
const lines = [];
lines.push(`| tower | batch | thr | prec | GMACs/item | ours ms | ORT ms | torch ms | ORT/ours | torch/ours | ours % of peak |`);
lines.push(`|---|---|---|---|---|---|---|---|---|---|---|`);
const out = [];
for (const row of rows) {
  const ref = fp32(row);
  const oursMs = median(row.ours);
  const ortMs = median(ref.ort);
  const torchMs = median(ref.torch);
  const tokens = row.tokens.length ? median(row.tokens) : null;
  const gmacs = row.t.tower === 'image' ? imageGMACs[row.t.model] : textGMACs(row.t.model, tokens);
  const peak = (row.prec === 'bf16' ? peakBF16 : peakFP32) * row.threads;
  const pct = 100 * gmacs / (oursMs / 1000) / peak;
  const name = row.t.tower === 'text' ? `${row.t.name} (${f(tokens, 1)} tok)` : row.t.name;
  lines.push(`| ${name} | ${row.batch} | ${row.threads} | ${row.prec}${row.spin ? ` spin ${row.spin} µs` : ''} | ${f(gmacs, 4)} | ${f(oursMs, oursMs < 1 ? 3 : 2)} | ${f(ortMs, ortMs < 1 ? 3 : 2)} | ${f(torchMs)} | ${f(ortMs / oursMs)} | ${f(torchMs / oursMs)} | ${f(pct, 0)} % |`);
  out.push({ tower: row.t.name, batch: row.batch, threads: row.threads, precision: row.prec, spin_us: row.spin, gmacs, tokens,
    ours_ms: oursMs, ort_ms: ortMs, torch_ms: torchMs, ours_runs: row.ours, ort_runs: ref.ort, torch_runs: ref.torch });
}
const header = [
  `date ${started.toISOString()}, host ${os.hostname()}, ${os.cpus().length} × ${os.cpus()[0].model} (family ${args['cpu-family'] ?? '?'}), load average at end ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`,
  `ORT onnxruntime-node ${ort.env.versions?.common ?? '1.30.0'} (graphOptimizationLevel all, intra-op threads = thr, inter-op 1); torch ${torchInfo.torch} with ${torchInfo.blas}`,
  `${rounds} alternating rounds (ours, ORT, torch per row), each ${warmup} warm-up + ${iters} timed calls after a ${settle} ms pause; ms per item = median over rounds of per-round medians`,
  ...(spinUs > 0 ? [`"spin" rows: ours with tinyclip.SetSpinWait(${spinUs} µs) (idle threads poll before sleeping, as ORT's pool does); the other rows use the default, sleeping pool`] : []),
  `texts: "a photo of a {ImageNet class}."; ours on the real tokens (mean shown), ORT and torch on the 77 positions of the exported/official graph; images: random pixels, preprocessing not timed`,
  `% of peak = GMACs/item ÷ ours ms ÷ (${peakFP32} GMAC/s FP32, ${peakBF16} BF16, per thread); bf16 rows compare ours (BF16) with ORT/torch in FP32`,
];
const md = header.map((h) => `${h}  `).join('\n') + '\n\n' + lines.join('\n') + '\n';
process.stdout.write(md);
if (args.json) fs.writeFileSync(args.json, JSON.stringify({ header, rows: out }, null, 2));
