"""Fuzzy screening of an applicant's name against a loaded SDN list.

How a name is scored (0-100, integer):
1. Both names are normalized (see ``normalize``) into tokens; order never matters.
2. Blocking: every distinct list token is indexed. Each query token is compared with the token vocabulary
   (``rapidfuzz.process.extract`` with ``fuzz.ratio``, cut-off ``TOKEN_SIMILARITY_CUTOFF``); only list names
   that share at least ``min(2, query tokens)`` similar tokens (or one, for one-token list names) are
   scored. This keeps a screen to a few milliseconds whatever the list size.
3. Alignment: query and list tokens are paired greedily by similarity. The score is a character-weighted
   Dice coefficient: ``sum(sim * (len q + len c)) / (matched chars + UNMATCHED_WEIGHT * unmatched chars)``.
   Unmatched tokens on either side count at half weight, because applicants routinely omit or add middle
   names and second surnames; a Russian patronymic in the middle of a list name (``...ovich``/``...ovna``)
   costs nothing when the applicant omits it.
4. A candidate that agrees on only one token while either side has more is capped at
   ``SINGLE_TOKEN_CAP``: one shared given name or surname is not a match.
5. Abjad scripts (Arabic, Persian, Hebrew, ...) do not write short vowels, so a query in one of them is also
   scored on consonant skeletons (``skeleton``): the same blocking and alignment over skeleton tokens, with
   the score multiplied by ``SKELETON_WEIGHT`` and capped at ``SKELETON_CAP`` because a skeleton is a
   lossier key ("ahmad" and "hamid" share "hmd"). The better of the two scores per name counts;
   ``Candidate.matched_by`` says which one it was.
6. Date of birth: if the applicant's date falls in one of the entry's DOB ranges the score gains
   ``DOB_EXACT_BONUS`` (exact day) or ``DOB_RANGE_BONUS`` (year or month only); if the entry has DOBs and
   none fit, it loses ``DOB_MISMATCH_PENALTY``.

Invariants:
- An exact name match (same normalized token set) is always ``possible_match``, whatever the DOB says. A
  skeleton match is never "exact": only its score can hold an application.
- The skeleton scorer runs only for abjad-script input and only adds candidates or raises scores; it
  never lowers a score the ordinary matcher gives.
- ``screen`` is pure and deterministic for a given list and parameters; the screener is immutable after
  construction and safe to share between threads.
- Individuals are screened against individuals only by default (primary names and strong aliases);
  ``entity_types`` widens this. Weak aliases (nicknames from remarks) are excluded by default, as OFAC
  does not expect them to be screened on their own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from rapidfuzz import fuzz, process

from apps.kyc.sanctions.loader import SanctionsList, SdnEntry
from apps.kyc.sanctions.normalize import normalize_name, sorted_token_key, to_ascii
from apps.kyc.sanctions.skeleton import abjad_forms, latin_forms, skeleton, uses_abjad, vowels_agree

__all__ = [
    "DEFAULT_REVIEW_THRESHOLD",
    "MATCHER_VERSION",
    "Candidate",
    "SanctionsScreener",
    "ScreeningResult",
]

# Bumped whenever scoring changes what can match, so the re-screen job screens everyone again under the same
# list version. 1: token matcher; 2: + consonant skeletons for abjad-script names.
MATCHER_VERSION = "2"
DEFAULT_REVIEW_THRESHOLD = 88
TOKEN_SIMILARITY_CUTOFF = 80  # fuzz.ratio between two tokens; "deripaska"/"deripasca" is 89
UNMATCHED_WEIGHT = 0.5
SINGLE_TOKEN_CAP = 70
DOB_EXACT_BONUS = 5
DOB_RANGE_BONUS = 2
DOB_MISMATCH_PENALTY = 15
SKELETON_SIMILARITY_CUTOFF = 88  # fuzz.ratio between two skeletons: equal, or one insertion in 4+ consonants
SKELETON_WEIGHT = 0.95
SKELETON_CAP = 95  # a skeleton never scores like an exact spelling
_PATRONYMIC_ENDINGS = ("ovich", "evich", "ovna", "evna", "ichna", "ogly", "kyzy")

NAME = "name"
SKELETON = "skeleton"

CLEAR = "clear"
POSSIBLE_MATCH = "possible_match"


@dataclass(frozen=True, slots=True)
class Candidate:
    ent_num: int
    primary_name: str  # the entry's name as listed
    matched_name: str  # the list string that matched (the primary name or an alias)
    is_alias: bool
    alias_type: str | None  # aka / fka / nka / weak_aka, None for the primary name
    sdn_type: str
    programs: tuple[str, ...]
    score: int  # 0-100 after the DOB adjustment; compare with the review threshold
    name_score: int  # 0-100, name only
    exact_name: bool  # same normalized token set
    dob_check: str  # "match", "mismatch" or "unknown"
    country_match: bool | None  # None when the applicant gave no country or the entry lists none
    matched_by: str = NAME  # "name" (normalized tokens) or "skeleton" (consonant skeletons, abjad input)
    matched_key: str = ""  # the compared form of matched_name: its normalized tokens or its skeletons


@dataclass(frozen=True, slots=True)
class ScreeningResult:
    query: str
    normalized_query: str
    decision: str  # "clear" or "possible_match"
    best_candidates: tuple[Candidate, ...]  # best first
    list_version: str
    review_threshold: int
    matcher_version: str = MATCHER_VERSION

    @property
    def is_possible_match(self) -> bool:
        return self.decision == POSSIBLE_MATCH


@dataclass(frozen=True, slots=True)
class _Name:
    entry_index: int
    raw: str
    tokens: tuple[str, ...]
    optional: tuple[bool, ...]  # tokens whose omission costs nothing (patronymics)
    key: str  # sorted distinct tokens
    alias_type: str | None
    forms: tuple[str, ...]  # folded forms of the tokens, for skeleton matching (see ``skeleton``)


def _optional_mask(tokens: tuple[str, ...], is_individual: bool) -> tuple[bool, ...]:
    # A patronymic sits between the given name and the surname ("oleg vladimirovich deripaska"). The
    # last token is the surname even when it ends like a patronymic (Belarusian "miklashevich").
    last = len(tokens) - 1
    return tuple(
        is_individual and 0 < i < last and t.endswith(_PATRONYMIC_ENDINGS) for i, t in enumerate(tokens)
    )


def _normalize_for(entry: SdnEntry, raw: str) -> str:
    if entry.is_individual:
        return normalize_name(raw)
    return normalize_name(raw, reorder_comma=False, strip_company_suffixes=True)


class SanctionsScreener:
    """Screens names against one ``SanctionsList``; build once per list version and reuse."""

    def __init__(
        self,
        sanctions_list: SanctionsList,
        *,
        entity_types: Iterable[str] | None = ("individual",),
        include_weak_aliases: bool = False,
        review_threshold: int = DEFAULT_REVIEW_THRESHOLD,
    ) -> None:
        self.sanctions_list = sanctions_list
        self.entity_types = None if entity_types is None else frozenset(entity_types)
        self.review_threshold = review_threshold
        self._entries = sanctions_list.entries
        names: list[_Name] = []
        for index, entry in enumerate(self._entries):
            if self.entity_types is not None and entry.sdn_type not in self.entity_types:
                continue
            variants: list[tuple[str, str | None]] = [(entry.name, None)]
            variants += [
                (a.name, a.alias_type)
                for a in entry.aliases
                if include_weak_aliases or a.alias_type != "weak_aka"
            ]
            seen: set[str] = set()
            for raw, alias_type in variants:
                normalized = _normalize_for(entry, raw)
                if not normalized or normalized in seen:
                    continue
                seen.add(normalized)
                tokens = tuple(normalized.split())
                names.append(
                    _Name(
                        entry_index=index,
                        raw=raw,
                        tokens=tokens,
                        optional=_optional_mask(tokens, entry.is_individual),
                        key=sorted_token_key(normalized),
                        alias_type=alias_type,
                        forms=latin_forms(normalized),
                    )
                )
        self._names: tuple[_Name, ...] = tuple(names)
        postings: dict[str, list[int]] = {}
        for name_id, name in enumerate(self._names):
            for token in set(name.tokens):
                postings.setdefault(token, []).append(name_id)
        self._postings = postings
        self._vocabulary: list[str] = list(postings)
        form_postings: dict[str, list[int]] = {}
        for name_id, name in enumerate(self._names):
            for form in set(name.forms):
                form_postings.setdefault(form, []).append(name_id)
        self._form_postings = form_postings
        forms_by_skeleton: dict[str, list[str]] = {}
        for form in form_postings:
            forms_by_skeleton.setdefault(skeleton(form), []).append(form)
        self._forms_by_skeleton = forms_by_skeleton
        self._skeleton_vocabulary: list[str] = list(forms_by_skeleton)

    @property
    def name_count(self) -> int:
        """How many name strings (primary names plus aliases) are screened against."""
        return len(self._names)

    def screen(
        self,
        full_name: str,
        date_of_birth: date | None = None,
        country: str | None = None,
        *,
        review_threshold: int | None = None,
        top_n: int = 5,
    ) -> ScreeningResult:
        """Screen one applicant. ``full_name`` may be "First Last", "LAST, First" or in any script."""
        threshold = self.review_threshold if review_threshold is None else review_threshold
        normalized = normalize_name(full_name)
        query_tokens = tuple(normalized.split())
        scored = self._score_candidates(query_tokens, date_of_birth, country)
        if uses_abjad(full_name):
            scored += self._score_candidates(abjad_forms(full_name), date_of_birth, country, by_skeleton=True)
        # One candidate per entry: its best-scoring name.
        best_per_entry: dict[int, Candidate] = {}
        for candidate in scored:
            current = best_per_entry.get(candidate.ent_num)
            if current is None or (candidate.score, candidate.name_score) > (
                current.score,
                current.name_score,
            ):
                best_per_entry[candidate.ent_num] = candidate
        ranked = sorted(best_per_entry.values(), key=lambda c: (-c.score, -c.name_score, c.ent_num))
        flagged = any(c.score >= threshold or c.exact_name for c in ranked)
        return ScreeningResult(
            query=full_name,
            normalized_query=normalized,
            decision=POSSIBLE_MATCH if flagged else CLEAR,
            best_candidates=tuple(ranked[:top_n]),
            list_version=self.sanctions_list.version,
            review_threshold=threshold,
        )

    # ------------------------------------------------------------------------------------------ internals

    def _score_candidates(
        self,
        query_tokens: tuple[str, ...],
        date_of_birth: date | None,
        country: str | None,
        *,
        by_skeleton: bool = False,
    ) -> list[Candidate]:
        if not query_tokens:
            return []
        distinct = set(query_tokens)
        # sims[q][list_token] = similarity 0-1 for every list token close enough to query token q.
        sims = {q: self._similar_forms(q) if by_skeleton else self._similar_tokens(q) for q in distinct}
        postings = self._form_postings if by_skeleton else self._postings
        hits: Counter[int] = Counter()
        for q in distinct:
            ids: set[int] = set()
            for token in sims[q]:
                ids.update(postings[token])
            hits.update(ids)
        needed = min(2, len(distinct))
        query_key = " ".join(sorted(distinct))
        country_key = to_ascii(country).casefold().strip() if country else None
        candidates: list[Candidate] = []
        for name_id, shared in hits.items():
            name = self._names[name_id]
            tokens = name.forms if by_skeleton else name.tokens
            if shared < needed and len(set(tokens)) > 1:
                continue
            if by_skeleton:
                optional = (False,) * len(tokens)
                raw_score = _alignment_score(query_tokens, tokens, optional, sims)
                exact = False
                base = min(SKELETON_CAP, round(raw_score * SKELETON_WEIGHT))
            else:
                exact = name.key == query_key
                base = 100 if exact else _alignment_score(query_tokens, tokens, name.optional, sims)
            entry = self._entries[name.entry_index]
            dob_check, adjustment = _dob_adjustment(entry, date_of_birth)
            candidates.append(
                Candidate(
                    ent_num=entry.ent_num,
                    primary_name=entry.name,
                    matched_name=name.raw,
                    is_alias=name.alias_type is not None,
                    alias_type=name.alias_type,
                    sdn_type=entry.sdn_type,
                    programs=entry.programs,
                    score=max(0, min(100, base + adjustment)),
                    name_score=base,
                    exact_name=exact,
                    dob_check=dob_check,
                    country_match=_country_match(entry, country_key),
                    matched_by=SKELETON if by_skeleton else NAME,
                    matched_key=" ".join(tokens),
                )
            )
        return candidates

    def _similar_tokens(self, query_token: str) -> dict[str, float]:
        similar = process.extract(
            query_token,
            self._vocabulary,
            scorer=fuzz.ratio,
            processor=None,
            score_cutoff=TOKEN_SIMILARITY_CUTOFF,
            limit=None,
        )
        return {token: score / 100 for token, score, _ in similar}

    def _similar_forms(self, abjad_form: str) -> dict[str, float]:
        """List forms whose skeleton is close to the query's; equal skeletons must also agree on vowels."""
        query_skeleton = skeleton(abjad_form)
        similar = process.extract(
            query_skeleton,
            self._skeleton_vocabulary,
            scorer=fuzz.ratio,
            processor=None,
            score_cutoff=SKELETON_SIMILARITY_CUTOFF,
            limit=None,
        )
        forms: dict[str, float] = {}
        for list_skeleton, score, _ in similar:
            for form in self._forms_by_skeleton[list_skeleton]:
                if list_skeleton != query_skeleton or vowels_agree(abjad_form, form):
                    forms[form] = score / 100
        return forms


def _alignment_score(
    query: tuple[str, ...],
    tokens: tuple[str, ...],
    optional: tuple[bool, ...],
    sims: dict[str, dict[str, float]],
) -> int:
    pairs: list[tuple[float, int, int]] = []
    for qi, q in enumerate(query):
        row = sims[q]
        for ci, c in enumerate(tokens):
            sim = row.get(c)
            if sim is not None:
                pairs.append((sim, qi, ci))
    # Greedy one-to-one pairing, most similar first; ties broken by position for determinism.
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    used_q: set[int] = set()
    used_c: set[int] = set()
    matched = 0.0
    matched_chars = 0
    for sim, qi, ci in pairs:
        if qi in used_q or ci in used_c:
            continue
        used_q.add(qi)
        used_c.add(ci)
        chars = len(query[qi]) + len(tokens[ci])
        matched += sim * chars
        matched_chars += chars
    unmatched_q = sum(len(q) for qi, q in enumerate(query) if qi not in used_q)
    unmatched_c = sum(len(c) for ci, c in enumerate(tokens) if ci not in used_c and not optional[ci])
    denominator = matched_chars + UNMATCHED_WEIGHT * (unmatched_q + unmatched_c)
    if denominator == 0:
        return 0
    score = round(100 * matched / denominator)
    if len(used_q) < 2 and (len(query) > 1 or len(tokens) > 1):
        score = min(score, SINGLE_TOKEN_CAP)
    return score


def _dob_adjustment(entry: SdnEntry, date_of_birth: date | None) -> tuple[str, int]:
    if date_of_birth is None or not entry.dates_of_birth:
        return "unknown", 0
    fitting = [r for r in entry.dates_of_birth if r.contains(date_of_birth)]
    if not fitting:
        return "mismatch", -DOB_MISMATCH_PENALTY
    return "match", DOB_EXACT_BONUS if any(r.is_exact_day for r in fitting) else DOB_RANGE_BONUS


def _country_match(entry: SdnEntry, country_key: str | None) -> bool | None:
    if country_key is None:
        return None
    listed = {c.casefold() for c in (*entry.countries, *entry.nationalities)}
    if not listed:
        return None
    return country_key in listed
