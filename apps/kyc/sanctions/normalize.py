"""Name normalization for sanctions screening.

Invariants:
- The output of :func:`normalize_name` is lowercase ASCII, tokens separated by single spaces, with no
  punctuation; normalizing twice gives the same result (idempotent on its own output).
- A name in list form ``"LAST, First Middle"`` becomes ``"first middle last"``; the same rule applies to
  applicant input containing a comma, so both sides compare in the same token order.
- Noise tokens (honorifics, generational suffixes, trailing company-form suffixes) are removed only while
  at least one real token remains: a name is never normalized to the empty string unless it had no letters
  or digits to begin with.
- Arabic article particles ("al", "el") are glued to the following token.
- Matching code must not depend on token order; :func:`sorted_token_key` gives the order-free form.
"""

from __future__ import annotations

import re
import unicodedata

from anyascii import anyascii

__all__ = [
    "ARTICLE_PARTICLES",
    "COMPANY_SUFFIXES",
    "PERSON_NOISE_TOKENS",
    "normalize_name",
    "sorted_token_key",
    "to_ascii",
]

# Titles and generational suffixes: they carry no identity and applicants add or omit them freely.
PERSON_NOISE_TOKENS: frozenset[str] = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "miss",
        "mx",
        "dr",
        "prof",
        "sir",
        "dame",
        "rev",
        "hon",
        "jr",
        "sr",
        "ii",
        "iii",
        "iv",
    }
)

# Legal-form suffixes. Removed only at the END of an entity name: "CO" or "SA" in the middle of a name can
# be a real word, and a name consisting only of a suffix keeps it.
COMPANY_SUFFIXES: frozenset[str] = frozenset(
    {
        "ltd", "limited", "llc", "inc", "incorporated", "co", "corp", "corporation", "company", "gmbh",
        "ag", "sa", "sarl", "srl", "bv", "nv", "plc", "llp", "lp", "jsc", "ojsc", "pjsc", "cjsc", "ooo",
        "zao", "oao", "pao", "fze", "fzco", "fzc", "pte", "pvt", "sas", "spa", "kg", "sl", "cv", "de",
    }
)  # fmt: skip

ARTICLE_PARTICLES: frozenset[str] = frozenset({"al", "el"})

# Periods and apostrophes join ("S.A." -> "sa", "Veksel'berg" -> "vekselberg", "O'Neil" -> "oneil");
# every other non-alphanumeric character separates tokens ("AL-ZOMOR" -> "al zomor").
_JOINERS = re.compile(r"[.'`\u2019\u02bc]")
_SEPARATORS = re.compile(r"[^a-z0-9]+")
# anyascii renders CJK as CamelCase syllables ("JinZhengEn"); split them so each syllable is a token.
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z])(?=[A-Z])")


def to_ascii(text: str) -> str:
    """Transliterate any script to ASCII and drop diacritics ("José" -> "Jose", "Олег" -> "Oleg")."""
    # NFKC first so compatibility forms (full-width letters, ligatures) transliterate predictably.
    return anyascii(unicodedata.normalize("NFKC", text))


def _reorder_comma_form(text: str) -> str:
    """Turn ``"LAST, First Middle[, Jr.]"`` into ``"First Middle Last"``; other text is unchanged."""
    parts = [part.strip() for part in text.split(",")]
    parts = [part for part in parts if part]
    if len(parts) < 2:
        return " ".join(parts)
    # Drop comma-separated parts that are pure noise ("KNOWLES, JR., Samuel") before deciding the order.
    meaningful = [p for p in parts if not _is_all_noise(p)]
    if len(meaningful) < 2:
        return " ".join(parts)
    last, given = meaningful[0], meaningful[1:]
    return " ".join([*given, last])


def _is_all_noise(part: str) -> bool:
    tokens = _SEPARATORS.split(_JOINERS.sub("", part.casefold()))
    tokens = [t for t in tokens if t]
    return bool(tokens) and all(t in PERSON_NOISE_TOKENS for t in tokens)


def normalize_name(raw: str, *, reorder_comma: bool = True, strip_company_suffixes: bool = False) -> str:
    """Return the canonical token string of a person or entity name.

    ``reorder_comma`` applies the OFAC individual convention ``LAST, First``. Pass False for entity,
    vessel and aircraft names, where a comma is part of the name ("ANGLO-CARIBBEAN CO., LTD.").
    ``strip_company_suffixes`` removes trailing legal forms; use it for entity names only.
    """
    text = to_ascii(raw)
    text = _CAMEL_BOUNDARY.sub(" ", text)
    if reorder_comma and "," in text:
        text = _reorder_comma_form(text)
    text = _JOINERS.sub("", text.casefold())
    tokens = [t for t in _SEPARATORS.split(text) if t]
    tokens = _merge_particles(tokens)
    if strip_company_suffixes:
        while len(tokens) > 1 and tokens[-1] in COMPANY_SUFFIXES:
            tokens.pop()
    else:
        kept = [t for t in tokens if t not in PERSON_NOISE_TOKENS]
        if kept:
            tokens = kept
    return " ".join(tokens)


def _merge_particles(tokens: list[str]) -> list[str]:
    """Glue Arabic article particles to the next token: "al zomor", "al-zomor" and "alzomor" all become
    "alzomor", so hyphenation and spacing choices do not split a surname into two tokens."""
    merged: list[str] = []
    i = 0
    while i < len(tokens):
        if tokens[i] in ARTICLE_PARTICLES and i + 1 < len(tokens):
            merged.append(tokens[i] + tokens[i + 1])
            i += 2
        else:
            merged.append(tokens[i])
            i += 1
    return merged


def sorted_token_key(normalized: str) -> str:
    """Order-free form of a normalized name: its distinct tokens sorted ("smith john" == "john smith")."""
    return " ".join(sorted(set(normalized.split())))
