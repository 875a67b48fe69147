"""PyTorch side of bench/compare: reads JSON commands on stdin, answers JSON.

Commands (one JSON object per line):
  {"op": "tokenize", "texts": [...]}                 -> {"ids": [[...77 ints], ...]}
  {"op": "run", "model": DIR, "tower": "image"|"text", "batch": B,
   "threads": T, "iters": N, "warmup": W, "offset": K} -> {"ms": median ms per item}
  {"op": "info"}                                     -> {"torch": ..., "blas": ...}
Models are the refclip directories written by `export-onnx --save-model`;
texts run all 77 positions, as the official model and the ONNX graph do.
"""
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.environ["REFCLIP_DIR"])
import refclip  # noqa: E402
import torch  # noqa: E402

models = {}
tok = refclip.Tokenizer()


def model(path):
    if path not in models:
        m, _ = refclip.load_model(path, verbose=False)
        models[path] = m.eval()
    return models[path]


def run(cmd):
    torch.set_num_threads(cmd["threads"])
    m = model(cmd["model"])
    b = cmd["batch"]
    if cmd["tower"] == "image":
        g = torch.Generator().manual_seed(1)
        x = torch.randn(b, 3, m.image_size, m.image_size, generator=g)
        calls = [lambda: m.encode_image(x)] * (cmd["warmup"] + cmd["iters"])
    else:
        names = refclip.read_lines(os.environ["CLASSNAMES"])
        calls = []
        for i in range(cmd["warmup"] + cmd["iters"]):
            k = cmd["offset"] + i * b
            texts = ["a photo of a %s." % names[(k + j) % len(names)] for j in range(b)]
            ids = tok(texts, m.context_length)
            calls.append(lambda ids=ids: m.encode_text(ids))
    times = []
    with torch.no_grad():
        for i, f in enumerate(calls):
            t = time.perf_counter()
            f()
            if i >= cmd["warmup"]:
                times.append((time.perf_counter() - t) * 1000 / b)
    return {"ms": statistics.median(times)}


def main():
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "info":
            out = {"torch": torch.__version__, "blas": refclip.blas_library()}
        elif cmd["op"] == "tokenize":
            out = {"ids": tok(cmd["texts"], 77).tolist()}
        elif cmd["op"] == "run":
            out = run(cmd)
        else:
            out = {"error": "unknown op %r" % cmd["op"]}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
