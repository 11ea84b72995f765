"""Placeholders real LHEO records carry where a value is unknown.

Training organisations fill mandatory text fields of the CARIF-OREF entry tools with
`-`, `.`, `Non renseigné` or `NR` when they have nothing to say (DOMAIN.md, "LHEO format
facts"; the national Intercarif flux has `-` in `resultats-attendus` and
`conditions-specifiques`). Such a text is kept as written, but every "field missing"
decision treats it as empty: a KAIROS screen showing "-" as the objective is missing it.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

# Compared without case, accents, spaces, dots, dashes and underscores ("N.R.", "- -",
# "Non-renseigné" are the same placeholders).
_PLACEHOLDERS = frozenset({"", "nonrenseigne", "nonrenseignee", "nr"})
_IGNORED = frozenset(".-_")


@lru_cache(maxsize=4096)
def is_placeholder(text: str | None) -> bool:
    """True for a missing, blank or placeholder text (`-`, `.`, `Non renseigné`, `NR`)."""
    if text is None:
        return True
    if len(text) > 24:  # a real text, not one of the placeholders: no need to fold it
        return False
    folded = unicodedata.normalize("NFKD", text.lower())
    folded = "".join(
        c for c in folded if not (unicodedata.combining(c) or c.isspace() or c in _IGNORED)
    )
    return folded in _PLACEHOLDERS


def meaningful(text: str | None) -> str | None:
    """The text itself, or None when it is a placeholder."""
    return None if is_placeholder(text) else text
