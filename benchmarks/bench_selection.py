"""Time COSMIC's expensive steps against their floors, in one process, on one model and prompt set.

- capture: ``cosmic_tl.activations.mean_resid_pre`` vs a plain forward of the HF model body
  (``model.bridge.original_model.model``) over the same batches: the floor.
- selection: ``cosmic_tl.selection.select_cosmic`` vs the straightforward reference in
  ``reference_selection.py`` (three full passes per candidate, full logits); both must pick the same
  (position, layer) and every score must agree to ``--tol``.
- generation: ``cosmic_tl.generation.generate_completions`` with an ACE addition hook vs without
  hooks. Both run exactly ``--max-new-tokens`` decoding steps (no token counts as eos), so they do
  the same work whatever the steering changes in the text.
- batching (optional): per-prompt cost of one forward at ``--batch-size`` vs twice that, i.e. what
  stacking two candidates' passes into one batch could save.

Prints a table, writes JSON (``--json``, default ``benchmarks/results/<timestamp>.json``) and ends
with one line ``RATIOS selection_speedup=… capture_overhead=… generation_overhead=… peak_rss_gb=…``.
Exits with status 1 if the optimized selection disagrees with the reference.

    python benchmarks/bench_selection.py --quick                      # < 10 min on 2 CPU cores
    python benchmarks/bench_selection.py --model /tmp/tiny --quick    # a make_tiny_chat_model dir
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_name  # noqa: E402
from reference_selection import compare_tables, reference_select_cosmic  # noqa: E402

from cosmic_tl import load_model, sample_paper  # noqa: E402
from cosmic_tl.candidates import Candidates  # noqa: E402
from cosmic_tl.runs.folder import peak_rss_gb  # noqa: E402
from cosmic_tl.activations import batches, candidate_directions, mean_resid_pre  # noqa: E402
from cosmic_tl.generation import generate_completions  # noqa: E402
from cosmic_tl.hooks import ace_addition_hooks  # noqa: E402
from cosmic_tl.selection import select_cosmic  # noqa: E402
from cosmic_tl.shipped import DEFAULT_MODEL  # noqa: E402
from cosmic_tl.similarity import evaluation_layers  # noqa: E402

PARTS = ("capture", "selection", "generation", "batching")
DEFAULT_PARTS = ("capture", "selection", "generation")
TARGETS = {"selection_speedup": (">=", 3.0), "capture_overhead": ("<=", 1.10),
           "generation_overhead": ("<=", 1.15), "peak_rss_gb": ("<=", 6.0)}
# --quick: sized for < 10 minutes on 2 CPU cores with the default 0.5B model.
QUICK = dict(n_train=8, n_val=8, positions=2, layer_stride=2, gen_prompts=4, max_new_tokens=16, repeats=3,
             selection_repeats=2)
FULL = dict(n_train=32, n_val=16, positions=5, layer_stride=2, gen_prompts=8, max_new_tokens=48, repeats=3,
            selection_repeats=1)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=DEFAULT_MODEL, help="shipped name, HF folder or .gguf (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help=f"small sizes: {QUICK}")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(DEFAULT_PARTS))
    p.add_argument("--n-train", type=int, help="prompts per class for capture and the candidates")
    p.add_argument("--n-val", type=int, help="validation prompts per class for selection")
    p.add_argument("--positions", type=int, help="score the last K post-instruction positions")
    p.add_argument("--layer-stride", type=int, help="score every k-th layer")
    p.add_argument("--steering", choices=("ace", "lce"), default="ace")
    p.add_argument("--gen-prompts", type=int, help="prompts to generate from")
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--repeats", type=int, help="timed repeats of capture/generation (the minimum is kept)")
    p.add_argument("--selection-repeats", type=int, help="timed repeats of each selection (the minimum is kept)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="clock for the table and ratios: wall time, or this process's CPU time (steadier under load)")
    p.add_argument("--tol", type=float, default=1e-4, help="largest allowed score difference")
    p.add_argument("--isolate", action="store_true", help="run each part in its own process (per-part peak RSS)")
    p.add_argument("--json", type=Path, help="output file (default: benchmarks/results/<timestamp>.json)")
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def machine() -> dict:
    from importlib.metadata import version

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "transformer_lens": version("transformer-lens"), "transformers": version("transformers"),
            "python": platform.python_version(), "load_avg_start": list(os.getloadavg())}


class Timer:
    """Wall-clock and process CPU seconds of repeated calls, kept by name.

    CPU seconds are the steadier figure on a shared machine (other processes lengthen wall time,
    not this process's CPU time), most of all with ``--threads 1``.
    """

    def __init__(self):
        self.runs: dict[str, dict[str, list[float]]] = {}

    def __call__(self, name: str, fn):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        runs = self.runs.setdefault(name, {"wall_s": [], "cpu_s": []})
        runs["wall_s"].append(time.perf_counter() - wall)
        runs["cpu_s"].append(time.process_time() - cpu)
        return out

    def best(self, name: str, clock: str) -> float:
        return min(self.runs[name][f"{clock}_s"])


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Bench:
    """The model, prompts and candidates shared by the parts; each part returns its figures."""

    def __init__(self, args: argparse.Namespace):
        self.args, self.timer = args, Timer()
        self.model = self.timer("load", lambda: load_model(args.model, device="cpu"))
        self.sample = sample_paper(n_train=args.n_train, n_val=args.n_val, n_test=args.gen_prompts, seed=42)
        self._candidates: Candidates | None = None

    def ratio(self, slow: str, fast: str) -> float:
        return self.timer.best(slow, self.args.clock) / self.timer.best(fast, self.args.clock)

    def times(self, *names: str) -> dict:
        return {name: self.timer.runs[name] for name in names}

    def candidates(self) -> Candidates:
        if self._candidates is None:
            c = candidate_directions(self.model, self.sample.harmful_train, self.sample.harmless_train,
                                     batch_size=self.args.batch_size, progress=False)
            k = min(self.args.positions, len(c.positions))
            self._candidates = Candidates(c.r[-k:], c.mu_neg[-k:], c.mu_pos[-k:], c.positions[-k:],
                                          c.n_positive, c.n_negative, c.meta)
        return self._candidates

    def capture(self) -> dict:
        m, prompts, bs = self.model, self.sample.harmful_train, self.args.batch_size
        body = m.bridge.original_model.model

        def plain():
            for b in batches(m, prompts, bs):
                body(input_ids=b.input_ids, attention_mask=b.attention_mask)

        for _ in range(self.args.repeats):  # interleaved, so that a load change hits both
            self.timer("capture", lambda: mean_resid_pre(m, prompts, batch_size=bs, progress=False))
            self.timer("plain_forward", plain)
        return {"n_prompts": len(prompts), **self.times("capture", "plain_forward"),
                "capture_overhead": self.ratio("capture", "plain_forward")}

    def selection(self) -> dict:
        m, s, a = self.model, self.sample, self.args
        cands = self.candidates()
        eval_layers = evaluation_layers(m, s.harmful_train, s.harmless_train, batch_size=a.batch_size,
                                        progress=False).eval_layers
        layers = list(range(0, m.n_layers, a.layer_stride))
        kw = dict(steering=a.steering, batch_size=a.batch_size, layers=layers)
        # Interleaved, best of --selection-repeats each: a machine that slows down for a while
        # (other tenants, clock changes) then lengthens one run of each, not one side only.
        for k in range(a.selection_repeats):
            sel = self.timer("optimized", lambda: select_cosmic(
                m, cands, s.harmful_val, s.harmless_val, eval_layers, progress=False, **kw))
            log(f"  optimized selection {k + 1}/{a.selection_repeats}: {self.timer.runs['optimized']['wall_s'][-1]:.1f} s")
            ref = self.timer("reference", lambda: reference_select_cosmic(
                m, cands, s.harmful_val, s.harmless_val, eval_layers, **kw))
            log(f"  reference selection {k + 1}/{a.selection_repeats}: {self.timer.runs['reference']['wall_s'][-1]:.1f} s")
        cmp = compare_tables(sel.table, ref)
        return {"n_val": len(s.harmful_val), "positions": cands.positions, "layers": layers,
                "eval_layers": eval_layers, "n_candidates": len(sel.table), **self.times("optimized", "reference"),
                "selection_speedup": self.ratio("reference", "optimized"), **cmp,
                "scores_agree": cmp["max_abs_score_diff"] <= a.tol}

    def generation(self) -> dict:
        m, a = self.model, self.args
        never_stops = dataclasses.replace(m, eos_token_ids=[-1])  # the same step count in both runs
        layer, c = m.n_layers // 2, self.candidates()
        hooks = ace_addition_hooks(c.r[-1, layer], c.mu_neg[-1, layer], layer)
        prompts = [p.instruction for p in self.sample.harmful_test]

        def gen(fwd_hooks):
            return generate_completions(never_stops, prompts, fwd_hooks=fwd_hooks, max_new_tokens=a.max_new_tokens,
                                        batch_size=len(prompts), progress=False)

        gen([])  # warm-up (first-call allocations)
        for _ in range(a.repeats):
            self.timer("with_hooks", lambda: gen(hooks))
            self.timer("without_hooks", lambda: gen([]))
        tokens = len(prompts) * a.max_new_tokens
        return {"n_prompts": len(prompts), "max_new_tokens": a.max_new_tokens,
                "hook": f"ACE addition at layer {layer}", **self.times("with_hooks", "without_hooks"),
                "tokens_per_s_with_hooks": tokens / self.timer.best("with_hooks", "wall"),
                "tokens_per_s_without_hooks": tokens / self.timer.best("without_hooks", "wall"),
                "generation_overhead": self.ratio("with_hooks", "without_hooks")}

    def batching(self) -> dict:
        m = self.model
        body = m.bridge.original_model.model
        b = next(batches(m, self.sample.harmful_train, self.args.batch_size))
        ids, mask = torch.cat([b.input_ids] * 2), torch.cat([b.attention_mask] * 2)
        for _ in range(self.args.repeats):
            self.timer("single_batch", lambda: body(input_ids=b.input_ids, attention_mask=b.attention_mask))
            self.timer("double_batch", lambda: body(input_ids=ids, attention_mask=mask))
        return {"batch": len(b), **self.times("single_batch", "double_batch"),
                "per_prompt_cost_double_vs_single": self.ratio("double_batch", "single_batch") / 2}


def run_parts(args: argparse.Namespace) -> dict:
    torch.set_grad_enabled(False)
    bench = Bench(args)
    out = {"model": bench.model.describe(), "load_s": bench.timer.best("load", "wall")}
    log(f"model loaded in {out['load_s']:.1f} s")
    for part in args.parts:
        log(f"{part} ...")
        out[part] = getattr(bench, part)()
        out[part]["peak_rss_gb_after"] = peak_rss_gb()
    out["peak_rss_gb"] = peak_rss_gb()
    return out


def run_isolated(args: argparse.Namespace, argv: list[str]) -> dict:
    """Each part in a fresh process: its peak RSS is its own (model load included)."""
    out: dict = {}
    rest = [x for x in argv if x != "--isolate"]
    for part in args.parts:
        path = Path(f"/tmp/bench_selection_{os.getpid()}_{part}.json")
        subprocess.run([sys.executable, __file__, *rest, "--parts", part, "--json", str(path)], check=True)
        result = json.loads(path.read_text())
        path.unlink()
        out.update({k: v for k, v in result.items() if k not in ("machine", "args", "ratios", "peak_rss_gb")})
        out[part]["peak_rss_gb"] = result["peak_rss_gb"]
    out["peak_rss_gb"] = max(out[p]["peak_rss_gb"] for p in args.parts)
    return out


def ratios(results: dict) -> dict:
    r = {"selection_speedup": results.get("selection", {}).get("selection_speedup"),
         "capture_overhead": results.get("capture", {}).get("capture_overhead"),
         "generation_overhead": results.get("generation", {}).get("generation_overhead"),
         "peak_rss_gb": results["peak_rss_gb"]}
    return {k: (round(v, 3) if v is not None else None) for k, v in r.items()}


def print_table(results: dict, clock: str) -> None:
    def best(runs: dict) -> float:
        return min(runs[f"{clock}_s"])

    rows = [("model load", f"{results['load_s']:.1f} s", "wall")]
    if "capture" in results:
        c = results["capture"]
        rows += [("capture: mean_resid_pre", f"{best(c['capture']):.2f} s", f"{c['n_prompts']} prompts, best of {len(c['capture']['wall_s'])}"),
                 ("capture: plain HF body forward", f"{best(c['plain_forward']):.2f} s", "the floor")]
    if "selection" in results:
        s = results["selection"]
        rows += [("selection: select_cosmic", f"{best(s['optimized']):.1f} s", f"{s['n_candidates']} candidates, {s['n_val']} val prompts/class"),
                 ("selection: reference", f"{best(s['reference']):.1f} s", "3 full passes per candidate, full logits"),
                 ("selection: picks", f"{tuple(s['pick_optimized'])} vs {tuple(s['pick_reference'])}", "same" if s["same_pick"] else "DIFFERENT"),
                 ("selection: max |score diff|", f"{s['max_abs_score_diff']:.2e}", f"{s['n_scores_compared']} scores")]
    if "generation" in results:
        g = results["generation"]
        rows += [("generation with hooks", f"{best(g['with_hooks']):.2f} s", g["hook"]),
                 ("generation without hooks", f"{best(g['without_hooks']):.2f} s", f"{g['n_prompts']} x {g['max_new_tokens']} tokens")]
    if "batching" in results:
        b = results["batching"]
        rows.append(("batching: per-prompt cost, 2x batch", f"{b['per_prompt_cost_double_vs_single']:.2f}", "1.00 = no gain from stacking"))
    for key, value in results["ratios"].items():
        if value is not None:
            op, target = TARGETS[key]
            ok = value >= target if op == ">=" else value <= target
            rows.append((f"ratio {key}", f"{value}", f"target {op} {target}: {'met' if ok else 'MISSED'}"))
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>20}  {note}")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}}
    results.update(run_isolated(args, argv) if args.isolate else run_parts(args))
    results["machine"]["load_avg_end"] = list(os.getloadavg())
    results["ratios"] = ratios(results)
    path = args.json or Path(__file__).parent / "results" / f"{datetime.datetime.now():%Y%m%d-%H%M%S}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print_table(results, args.clock)
    print(f"machine: {results['machine']['cpu']}, {results['machine']['usable_cores']} cores, "
          f"{results['machine']['torch_threads']} torch threads, load {results['machine']['load_avg_start'][0]:.1f}"
          f" -> {results['machine']['load_avg_end'][0]:.1f}; times and ratios: {args.clock} clock; JSON: {path}")
    print("RATIOS " + " ".join(f"{k}={v}" for k, v in results["ratios"].items()))
    sel = results.get("selection")
    return 0 if sel is None or (sel["same_pick"] and sel["scores_agree"]) else 1


if __name__ == "__main__":
    sys.exit(main())
