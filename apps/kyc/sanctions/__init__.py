"""Sanctions screening for KYC: a pure-Python library (no Django models, no database).

Load a list version once with :func:`load_sdn_list`, build one :class:`SanctionsScreener` for it, and
call :meth:`SanctionsScreener.screen` per applicant (Arabic-script names are also scored on consonant
skeletons, see ``skeleton``). :func:`diff_versions` tells a re-screening job which
entries are new or gained names between two versions.
"""

from apps.kyc.sanctions.loader import (
    Address,
    Alias,
    DobRange,
    SanctionsList,
    SdnEntry,
    VersionDiff,
    diff_versions,
    load_sdn_list,
    parse_dob_ranges,
)
from apps.kyc.sanctions.matcher import (
    DEFAULT_REVIEW_THRESHOLD,
    MATCHER_VERSION,
    Candidate,
    SanctionsScreener,
    ScreeningResult,
)
from apps.kyc.sanctions.normalize import normalize_name, sorted_token_key, to_ascii
from apps.kyc.sanctions.skeleton import abjad_forms, latin_forms, skeleton, uses_abjad, vowels_agree

__all__ = [
    "DEFAULT_REVIEW_THRESHOLD",
    "MATCHER_VERSION",
    "Address",
    "Alias",
    "Candidate",
    "DobRange",
    "SanctionsList",
    "SanctionsScreener",
    "ScreeningResult",
    "SdnEntry",
    "VersionDiff",
    "abjad_forms",
    "diff_versions",
    "latin_forms",
    "load_sdn_list",
    "normalize_name",
    "parse_dob_ranges",
    "skeleton",
    "sorted_token_key",
    "to_ascii",
    "uses_abjad",
    "vowels_agree",
]
