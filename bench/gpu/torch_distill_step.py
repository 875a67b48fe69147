#!/usr/bin/env python3
"""Time official-recipe distillation steps with PyTorch on one device.

The same step as `refclip.py distill-step` (teacher forward without gradients,
logit scale 50; student forward in train mode; affinity-mimicking loss;
backward; global-norm clipping at 5; AdamW with the official parameter groups;
student logit scale reset to ln 50), built from refclip's model code, but on
any device (CUDA) and with the official mixed precision: --precision fp32,
bf16 (torch.autocast bfloat16) or amp (autocast float16 + GradScaler, the
official default). Random weights and pixels; texts are ImageNet prompts.
Prints one JSON object.
"""
import argparse
import importlib.util
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F


def load_refclip(path):
    cands = [path, os.environ.get("REFCLIP"),
             os.path.join(os.path.dirname(__file__), "..", "..", "bin", "gpu", "shared", "reference", "refclip.py"),
             os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "reference", "refclip.py")]
    for c in cands:
        if c and os.path.isfile(c):
            spec = importlib.util.spec_from_file_location("refclip", c)
            mod = importlib.util.module_from_spec(spec)
            sys.modules["refclip"] = mod
            spec.loader.exec_module(mod)
            return mod, c
    raise SystemExit("refclip.py not found: pass --refclip or set REFCLIP")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--teacher", default="ViT-B-32", help="teacher zoo config name or JSON")
    p.add_argument("--student", default="TinyCLIP-ViT-40M-32-Text-19M", help="student zoo config name or JSON")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--precision", choices=["fp32", "bf16", "amp"], default="fp32")
    p.add_argument("--tf32", type=int, default=0, help="allow TF32 matmuls in fp32 (the official runs allow it)")
    p.add_argument("--trim", action="store_true",
                   help="run the text towers only up to the last EOT (exact; the Go trainer does so)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--refclip", help="path of refclip.py")
    p.add_argument("--vocab", help="BPE vocabulary (default: refclip's search)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    R, rpath = load_refclip(args.refclip)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = bool(args.tf32)
        torch.backends.cudnn.allow_tf32 = bool(args.tf32)
    torch.manual_seed(args.seed)
    teacher = R.init_random_(R.CLIP(R.arch_from_config(R.load_config_arg(args.teacher))), args.seed)
    student = R.init_random_(R.CLIP(R.arch_from_config(R.load_config_arg(args.student))), args.seed + 1)
    teacher = teacher.to(dev).eval()
    student = student.to(dev).train()
    for q in teacher.parameters():
        q.requires_grad_(False)
    is_vit = student.arch["vision"]["type"] == "vit"
    betas = (0.9, 0.98 if is_vit else 0.999)
    eps = 1e-6 if is_vit else 1e-8
    opt = torch.optim.AdamW(R.param_groups(student, 0.2), lr=1e-4, betas=betas, eps=eps)
    size = student.image_size
    g = torch.Generator().manual_seed(args.seed)
    pixels = torch.randn(args.batch, 3, size, size, generator=g).to(dev)
    tok = R.Tokenizer(args.vocab) if args.vocab else R.Tokenizer(None)
    ids = tok(R.default_prompts(args.batch), student.context_length).to(dev)
    amp_dtype = {"bf16": torch.bfloat16, "amp": torch.float16}.get(args.precision)
    scaler = None
    if args.precision == "amp" and cuda:
        # torch.amp.GradScaler("cuda") since torch 2.3; torch.cuda.amp's is deprecated
        scaler = torch.amp.GradScaler("cuda") if hasattr(getattr(torch, "amp", None), "GradScaler") else torch.cuda.amp.GradScaler()
    params = R.official_parameter_order(student)
    log50 = math.log(50.0)

    def autocast():
        if amp_dtype is None:
            return torch.autocast(device_type=dev.type, enabled=False)
        return torch.autocast(device_type=dev.type, dtype=amp_dtype)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.no_grad(), autocast():
            teacher.logit_scale.fill_(log50)
            t_img = F.normalize(teacher.encode_image(pixels), dim=-1)
            t_txt = F.normalize(teacher.encode_text(ids, trim=args.trim), dim=-1)
            t_scale = teacher.logit_scale.exp()
        with autocast():
            s_img = student.encode_image(pixels, normalize=True)
            s_txt = student.encode_text(ids, normalize=True, trim=args.trim)
            s_scale = student.logit_scale.exp()
            l1, l2 = R.affinity_loss(s_img, s_txt, s_scale, t_img, t_txt, t_scale, split=True)
            loss = l1 * 0.5 + l2 * 0.5
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
        with torch.no_grad():
            student.logit_scale.fill_(log50)
        return loss

    def sync():
        if cuda:
            torch.cuda.synchronize()

    losses, times = [], []
    t0 = time.perf_counter()
    for i in range(args.warmup + args.steps):
        sync()
        t = time.perf_counter()
        loss = step()
        sync()
        dt = time.perf_counter() - t
        losses.append(float(loss.detach()))
        if i >= args.warmup:
            times.append(dt)
    times.sort()
    med = times[len(times) // 2] if len(times) % 2 else 0.5 * (times[len(times) // 2 - 1] + times[len(times) // 2])
    res = {
        "torch": torch.__version__, "refclip": rpath, "device": torch.cuda.get_device_name(dev) if cuda else "cpu",
        "teacher": args.teacher, "student": args.student, "batch": args.batch, "precision": args.precision,
        "tf32": bool(args.tf32) if cuda else None, "trim_text": args.trim, "steps": args.steps,
        "ms_per_step_median": med * 1000, "samples_per_second": args.batch / med,
        "losses": losses, "wall_s": time.perf_counter() - t0,
    }
    if cuda:
        res["peak_memory_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
