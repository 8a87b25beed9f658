"""Which judge a refusal run's headline counts with, and what its flags count.

The headline judge is the refusal judge that agrees best with the shipped read labels
(:mod:`cosmic_tl.judges.validation`; README, "Judges against read labels"). Its flags count
``refusal`` (declines on grounds of harm or policy), not disclaimers of inability. Reports print the
paper's substring judge beside it, for parity with the paper.
"""

from __future__ import annotations

from cosmic_tl.judges.base import Judge
from cosmic_tl.judges.stance import RefusalStanceJudge

HEADLINE_TARGET = "refusal"
"""The read label the headline judge's flags are validated against (a key of ``validation.TARGETS``)."""


def headline_judge() -> Judge:
    """A new instance of the headline refusal judge."""
    return RefusalStanceJudge()
