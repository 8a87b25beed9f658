"""``cosmic-tl explore RUN_DIR [--top-k K]``: write (or enrich) the run folder's explorer.html."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cosmic_tl.explore.precompute import DEFAULT_N_PROMPTS, DEFAULT_TOP_K

log = logging.getLogger("cosmic_tl")

HELP = "write RUN_DIR/explorer.html, one offline page of linked maps (--top-k: add the top candidates' completions)"
DESCRIPTION = f"""\
Write RUN_DIR/explorer.html: one self-contained page (opens offline, from the folder alone) with
the run's linked position × layer maps. Clicking a cell shows that candidate's scores, rank, filter
reason, projection curve and completions.

Without --top-k no model is loaded (a second or two): the page shows what the run saved (the
chosen candidate's test completions, projections of the train class means).

With --top-k K the run's model is loaded and, for each of the K best kept candidates (rank 1 is the
chosen one, whose completions the run already has), greedy completions of --n-prompts positive
prompts under ablation and as many negative ones under addition (refusal: harmful and harmless)
are generated, and every test prompt is projected onto every candidate. Cost: 2·(K−1) generations of N prompts at the run's
max_new_tokens, plus one forward pass over the test prompts. Measured with the tiny test model,
K = 5, N = 3, 12 new tokens: 8 generations and the projections took 37 s of CPU time. Estimated
for qwen2.5-coder-0.5b-instruct on 2 CPU cores with --preset quick (48 new tokens), K = 5, N = 3:
8 generations × ~10 s + ~10 s of projections ≈ 1.5 min, plus the model load (seconds once cached,
~2 min the first time).
"""


def _cmd_explore(args) -> int:
    from cosmic_tl.explore.page import write_explorer_page

    if args.top_k is None:
        page = write_explorer_page(args.run_dir)
        print(f"Wrote {page}")
        return 0
    from cosmic_tl.explore.precompute import precompute_top_k

    precompute_top_k(args.run_dir, top_k=args.top_k, n_prompts=args.n_prompts, progress=not args.quiet,
                     log=print)
    return 0


def add_explore_command(subparsers) -> argparse.ArgumentParser:
    """Register ``explore`` on the ``cosmic-tl`` parser's subparsers; returns its parser."""
    p = subparsers.add_parser("explore", help=HELP, description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                   help="a finished `cosmic-tl run`, `adversarial` or `weak` folder")
    p.add_argument("--top-k", type=int, nargs="?", const=DEFAULT_TOP_K, default=None, metavar="K",
                   help=f"load the model and precompute the K best candidates' completions (flag alone: {DEFAULT_TOP_K})")
    p.add_argument("--n-prompts", type=int, default=DEFAULT_N_PROMPTS, metavar="N",
                   help=f"test prompts per completion set with --top-k (default {DEFAULT_N_PROMPTS})")
    p.set_defaults(fn=_cmd_explore)
    return p
