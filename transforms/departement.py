"""The département of an address, when the address does not say it.

LHEO's `adresse/departement` is optional and often absent from real records (DOMAIN.md,
"LHEO format facts"), which left flags and the Region's report "par département" at
"non renseigné". It is derived, in this order, from:

1. `departement` itself (unless blank or a placeholder);
2. `code-INSEE-commune`: its first two characters (`2A`/`2B` for Corsica), three for the
   overseas départements and collectivités (`971`…`976`, `977`, `978`, `98x`);
3. the postal code: two digits, three for `97x`/`98x`; Corsica's `20` is `2A` for
   `200xx`/`201xx` and `2B` otherwise (Ajaccio 20000, Bastia 20200/20600).

Anything else (a foreign or malformed code) gives None: unknown, not guessed.
"""

from __future__ import annotations

from typing import Literal

from transforms.placeholders import is_placeholder

DepartementSource = Literal["element", "insee", "postal_code"]


def _from_insee(code: str) -> str | None:
    code = code.strip().upper()
    if len(code) != 5:
        return None
    if code[:2] in ("2A", "2B") and code[2:].isdigit():
        return code[:2]
    if not code.isdigit() or code.startswith("00"):
        return None
    if code.startswith(("97", "98")):
        return code[:3]
    if code.startswith("20"):
        return None  # a pre-1976 Corsican code: which of 2A/2B is not written in it
    return code[:2]


def _from_postal_code(code: str) -> str | None:
    code = code.strip().replace(" ", "")
    if len(code) != 5 or not code.isdigit() or code.startswith("00"):
        return None
    if code.startswith(("97", "98")):
        return code[:3]
    if code.startswith("20"):
        return "2A" if code[2] in "01" else "2B"
    return code[:2]


def derive_departement(
    departement: str | None, insee_commune: str | None, postal_code: str | None
) -> tuple[str | None, DepartementSource | None]:
    """(département, where it was read from) of an address; (None, None) when unknown."""
    if not is_placeholder(departement):
        assert departement is not None
        return departement.strip(), "element"
    if insee_commune and (found := _from_insee(insee_commune)):
        return found, "insee"
    if postal_code and (found := _from_postal_code(postal_code)):
        return found, "postal_code"
    return None, None
