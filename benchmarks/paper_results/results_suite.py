"""What ``make results`` runs: the paper's main comparison on each shipped Qwen model and its
robustness experiments, each one ``cosmic-tl`` command writing one run folder under ``results/runs/``.

Main comparison (paper Table 1): COSMIC and the refusal-token baseline, each under ACE and LCE, on
one model. The four runs of a model share their prompts, candidate directions, evaluation layers and
unsteered replies: the first computes them, the others take them (hash-checked) with
``--reuse-from``. Each refusal-token run names the COSMIC run of its steering rule, so when the two
methods pick the same direction it also takes that run's steered replies, verdicts, metrics and
TruthfulQA: the same computation on the same inputs, done once. The baseline uses its COSMIC-repo variant under both rules: Arditi's variant
filters the prompts by refusal score, which would give the two methods different test inputs.

Sizes (``--preset demo``): 128 + 128 train prompts, 16 + 16 validation, 64 + 64 test prompts,
replies of 128 new tokens, every 4th layer scored, 100 TruthfulQA questions; Qwen's own system turn
(``--system default``: without it the 0.5B model refuses too few harmful prompts for an ablation
effect to be testable), addition at α = 1.5, generation batches of 32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

QWEN_05B, QWEN_15B, SMOLLM2 = "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct", "smollm2-135m-instruct"
SETTINGS = ("--preset", "demo", "--system", "default", "--alpha", "1.5", "--gen-batch-size", "32")
SHORT = {QWEN_05B: "qwen-0.5b", QWEN_15B: "qwen-1.5b", SMOLLM2: "smollm2-135m"}
CELLS = (("cosmic", "lce"), ("cosmic", "ace"), ("refusal-token", "lce"), ("refusal-token", "ace"))


@dataclass(frozen=True)
class Spec:
    """One run of the suite.

    Attributes:
        name: Its folder under ``results/runs/`` (``<model>/<run>``).
        group: ``main`` (the comparison table) or ``robustness`` (paper sections 5 and 6).
        args: The ``cosmic-tl`` arguments, ``--out`` excepted.
        sibling: The run it takes its shared steps from (``--reuse-from``), when any.
        what: One line for the table and the record.
    """

    name: str
    group: str
    args: tuple[str, ...]
    sibling: str | None = None
    what: str = ""
    tags: dict = field(default_factory=dict)


def main_comparison(model: str) -> list[Spec]:
    """The four runs of ``model``: COSMIC / refusal-token × LCE / ACE; the first computes the shared
    steps, and each refusal-token run's sibling is the COSMIC run of its rule."""
    def name(selection: str, steering: str) -> str:
        return f"{SHORT[model]}/{selection}-{steering}"

    def sibling(selection: str, steering: str) -> str | None:
        return None if (selection, steering) == CELLS[0] else name("cosmic", steering if selection != "cosmic" else "lce")

    return [Spec(name(selection, steering), "main",
                 ("run", "--model", model, "--selection", selection, "--refusal-token-variant", "cosmic-repo",
                  "--steering", steering, *SETTINGS),
                 sibling=sibling(selection, steering), what=f"{selection} selection, {steering.upper()}",
                 tags={"model": model, "selection": selection, "steering": steering})
            for selection, steering in CELLS]


def robustness() -> list[Spec]:
    """Section 5 (forced-refusal system prompt) and section 6 (weakened M′; a barely aligned model)."""
    return [
        Spec(f"{SHORT[SMOLLM2]}/weak-natural", "robustness",
             ("weak", "--natural", "--model", SMOLLM2, "--steering", "lce", "--preset", "demo", "--gen-batch-size", "32"),
             what="weakly aligned model as shipped: COSMIC in the model as it is, α sweep",
             tags={"model": SMOLLM2, "experiment": "weak"}),
        Spec(f"{SHORT[QWEN_05B]}/adversarial", "robustness", ("adversarial", "--model", QWEN_05B, "--steering", "lce",
                                                               *SETTINGS),
             what="directions extracted under a forced-refusal system prompt",
             tags={"model": QWEN_05B, "experiment": "adversarial"}),
        Spec(f"{SHORT[QWEN_05B]}/weak", "robustness", ("weak", "--model", QWEN_05B, "--steering", "lce", *SETTINGS),
             what="weakened model M′ (r₁ ablated): COSMIC finds r₂, α sweep",
             tags={"model": QWEN_05B, "experiment": "weak"}),
    ]


def suite() -> list[Spec]:
    """Every run, in the order ``make results`` takes them (cheapest significant evidence first)."""
    return [*main_comparison(QWEN_05B), *robustness(), *main_comparison(QWEN_15B)]
