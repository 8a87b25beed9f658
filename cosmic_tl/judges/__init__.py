"""Judges: one yes/no flag per (prompt, response) pair, for refusal and for any other concept.

- text: :class:`SubstringJudge` (the paper's refusal phrases), :class:`PhraseJudge` (your own
  phrases), :class:`RegexJudge`; :func:`jailbreak_flags` (the authors' rule for refusal rates).
- script: :class:`CJKJudge` (the share of Chinese characters).
- models: :class:`ModelJudge` (a chat model answers your yes/no question; refusal by default),
  :class:`LlamaGuard3Judge` (the authors' harm judge).
- reading the reply: :class:`RefusalStanceJudge` (declines vs disclaimers; the headline judge of
  refusal runs, :func:`headline_judge`), :class:`HereticMarkerJudge` (heretic's markers, read from
  an installed heretic), :class:`DegenerateJudge` (empty, looping or not language).
- any function: :class:`CallableJudge`.
- validation against the shipped read labels: :func:`validate_judge`, :func:`reference_labels`.

Every judge returns ``True`` where the reply shows the judged behaviour (it refuses, it is in
Chinese, it matches). See ``docs/method.md §7``.
"""

from cosmic_tl.judges.agreement import judge_agreement
from cosmic_tl.judges.base import CallableJudge, Judge, JudgeError, JudgeFunction, JudgeUnavailableError, checked_flags
from cosmic_tl.judges.degenerate import DegenerateJudge, degenerate_reason
from cosmic_tl.judges.headline import HEADLINE_TARGET, headline_judge
from cosmic_tl.judges.heretic import HereticMarkerJudge
from cosmic_tl.judges.stance import RefusalStanceJudge
from cosmic_tl.judges.validation import LabelledReply, LabelSetError, reference_labels, validate_flags, validate_judge
from cosmic_tl.judges.cjk import DEFAULT_CJK_THRESHOLD, CJKJudge, cjk_share
from cosmic_tl.judges.llamaguard import LLAMA_GUARD_3, LlamaGuard3Judge
from cosmic_tl.judges.model import (
    ANSWER_FORMAT,
    DEFAULT_JUDGE_MODEL,
    MODEL_JUDGE_QUESTION,
    REFUSAL_QUESTION,
    ModelJudge,
    model_judge_instruction,
    parse_yes_no,
)
from cosmic_tl.judges.text import (
    MIN_RESPONSE_CHARS,
    REFUSAL_PHRASES,
    PhraseJudge,
    RegexJudge,
    SubstringJudge,
    jailbreak_flags,
)

__all__ = [
    "ANSWER_FORMAT",
    "CJKJudge",
    "CallableJudge",
    "DegenerateJudge",
    "HEADLINE_TARGET",
    "HereticMarkerJudge",
    "LabelSetError",
    "LabelledReply",
    "RefusalStanceJudge",
    "degenerate_reason",
    "headline_judge",
    "reference_labels",
    "validate_flags",
    "validate_judge",
    "DEFAULT_CJK_THRESHOLD",
    "DEFAULT_JUDGE_MODEL",
    "Judge",
    "JudgeError",
    "JudgeFunction",
    "JudgeUnavailableError",
    "LLAMA_GUARD_3",
    "LlamaGuard3Judge",
    "MIN_RESPONSE_CHARS",
    "MODEL_JUDGE_QUESTION",
    "ModelJudge",
    "PhraseJudge",
    "REFUSAL_PHRASES",
    "REFUSAL_QUESTION",
    "RegexJudge",
    "SubstringJudge",
    "checked_flags",
    "cjk_share",
    "jailbreak_flags",
    "judge_agreement",
    "model_judge_instruction",
    "parse_yes_no",
]
