"""A judge of the reply's script: is the reply written in Chinese characters?

``cjk_share(text)`` is the share of CJK characters among the reply's *counted* characters:

- **counted** = every letter (Unicode general category ``L*``: Latin, Cyrillic, Han, kana,
  Hangul, ...) plus CJK punctuation. Spaces, digits, ASCII punctuation, symbols, emoji and
  combining marks are not counted: they carry no language (a Chinese reply full of numbers is
  still Chinese). Code is not counted either: fenced blocks (```` ``` ```` or ``~~~``, up to
  the closing fence or the end of the reply, since a cut-off generation often ends inside one)
  and inline `` `code` `` spans are removed first, because identifiers are English in any
  language's reply.
- **CJK** = Han ideographs (:data:`HAN_RANGES`: the CJK Unified Ideographs block, extensions
  A to I and both compatibility blocks) plus CJK punctuation (:data:`CJK_PUNCTUATION_RANGES`:
  the CJK Symbols and Punctuation block without the ideographic space, and the fullwidth
  punctuation of the Halfwidth and Fullwidth Forms block, e.g. ``，。！？：；（）、「」``).
  Japanese kana, Hangul and fullwidth Latin letters are letters but **not** CJK here, so
  kana-only Japanese scores 0 and Korean scores 0. Japanese with many kanji can still pass:
  the judge detects Han script, not the Chinese language.

The reply is flagged when the share is at least :data:`DEFAULT_CJK_THRESHOLD` (0.3). Why 0.3: one
Han character carries about as much as one English word of ~4.5 letters, so in prose where a
fraction ``f`` of the words is Chinese the share is about ``f / (f + 4.5 (1 − f))``; 0.3 means
roughly two thirds of the words are Chinese. Replies the model writes in Chinese score near 1
(a few Latin names or terms), English replies near 0 (even one quoting a Chinese phrase stays
below 0.2), so the threshold only decides genuinely mixed replies, and decides them for "mostly
Chinese". A reply with nothing counted (empty, only code or digits) is not flagged.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Sequence

from cosmic_tl.judges.base import Judge, JudgeError, check_pairs

DEFAULT_CJK_THRESHOLD = 0.3
"""Default share of CJK characters from which a reply counts as Chinese (see the module docstring)."""

HAN_RANGES: tuple[tuple[int, int], ...] = (
    (0x3400, 0x4DBF),  # CJK Unified Ideographs Extension A
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0xF900, 0xFAFF),  # CJK Compatibility Ideographs
    (0x20000, 0x2A6DF),  # Extension B
    (0x2A700, 0x2EE5F),  # Extensions C, D, E, F, I
    (0x2F800, 0x2FA1F),  # CJK Compatibility Ideographs Supplement
    (0x30000, 0x323AF),  # Extensions G, H
)
"""Code point ranges (inclusive) of the Han ideographs."""

CJK_PUNCTUATION_RANGES: tuple[tuple[int, int], ...] = (
    (0x3001, 0x303F),  # CJK Symbols and Punctuation, without U+3000 IDEOGRAPHIC SPACE (a space)
    (0xFF01, 0xFF0F),  # fullwidth ！＂＃＄％＆＇（）＊＋，－．／
    (0xFF1A, 0xFF20),  # fullwidth ：；＜＝＞？＠
    (0xFF3B, 0xFF40),  # fullwidth ［＼］＾＿｀
    (0xFF5B, 0xFF65),  # fullwidth ｛｜｝～ and the halfwidth CJK brackets and full stop
)
"""Code point ranges (inclusive) of the CJK punctuation counted as CJK."""

_FENCED_CODE = re.compile(r"(```|~~~).*?(?:\1|\Z)", re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]+`")


def _in_ranges(code_point: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(low <= code_point <= high for low, high in ranges)


def is_han(char: str) -> bool:
    """Whether ``char`` is a Han ideograph (:data:`HAN_RANGES`)."""
    return _in_ranges(ord(char), HAN_RANGES)


def is_cjk_punctuation(char: str) -> bool:
    """Whether ``char`` is CJK punctuation (:data:`CJK_PUNCTUATION_RANGES`)."""
    return _in_ranges(ord(char), CJK_PUNCTUATION_RANGES)


def without_code(text: str) -> str:
    """``text`` with fenced code blocks (closed or cut off) and inline code spans removed."""
    return _INLINE_CODE.sub(" ", _FENCED_CODE.sub(" ", text))


def cjk_share(text: str) -> float | None:
    """The share of CJK characters among the counted characters of ``text`` (module docstring).

    Returns:
        A number in [0, 1], or None when nothing is counted (empty text, only code, digits or
        punctuation).

    Example:
        >>> cjk_share("答案是 42。")  # 3 Han + 1 CJK full stop; the digits and the space are not counted
        1.0
        >>> round(cjk_share("Hello 你好"), 3)  # 2 of 7 letters
        0.286
    """
    cjk = counted = 0
    for char in without_code(text):
        punctuation = is_cjk_punctuation(char)
        if punctuation or unicodedata.category(char).startswith("L"):
            counted += 1
            cjk += punctuation or is_han(char)
    return None if counted == 0 else cjk / counted


class CJKJudge(Judge):
    """A reply is flagged as Chinese when its :func:`cjk_share` is at least ``threshold``.

    Args:
        threshold: In (0, 1]; default :data:`DEFAULT_CJK_THRESHOLD` (justified in the module
            docstring).
        name: The judge's name in saved results.

    Raises:
        JudgeError: the threshold is not a number in (0, 1].

    Example:
        >>> CJKJudge().judge(["p"] * 3, ["巴黎是法国的首都。", "Paris is the capital.", ""])
        [True, False, False]
    """

    name = "cjk"

    def __init__(self, threshold: float = DEFAULT_CJK_THRESHOLD, name: str | None = None):
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
            raise JudgeError(f"The CJK judge's threshold must be a number in (0, 1], got {threshold!r}.")
        self.threshold = float(threshold)
        if name is not None:
            self.name = name

    def shares(self, responses: Sequence[str]) -> list[float | None]:
        """Each response's :func:`cjk_share` (for auditing a verdict)."""
        return [cjk_share(r) for r in responses]

    def judge(self, prompts: Sequence[str], responses: Sequence[str]) -> list[bool]:
        check_pairs(prompts, responses)
        return [share is not None and share >= self.threshold for share in self.shares(responses)]

    @property
    def description(self) -> str:
        return f"CJK characters are at least {self.threshold:g} of the reply's letters (code excluded)"
