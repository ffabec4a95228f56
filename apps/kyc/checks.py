"""Automated KYC checks: pure functions over an application's data (no database, no Django models).

Each check returns a ``CheckResult``; ``passed`` is False when the customer has to fix something. The caller
decides what a failure means (ACTION_REQUIRED); sanctions screening is separate (``apps.kyc.screening``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

MINIMUM_AGE = 18

# The fields (section, name) an application must have before any check runs; GET /v1/accounts/kyc lists the
# missing ones with these dotted names.
REQUIRED_FIELDS: tuple[tuple[str, str], ...] = (
    ("contact", "email_address"),
    ("contact", "phone_number"),
    ("contact", "street_address"),
    ("contact", "city"),
    ("contact", "postal_code"),
    ("contact", "country"),
    ("identity", "given_name"),
    ("identity", "family_name"),
    ("identity", "date_of_birth"),
    ("identity", "tax_id"),
    ("identity", "tax_id_type"),
    ("identity", "country_of_citizenship"),
    ("identity", "country_of_tax_residence"),
    ("identity", "funding_source"),
    ("disclosures", "is_control_person"),
    ("disclosures", "is_affiliated_exchange_or_finra"),
    ("disclosures", "is_politically_exposed"),
    ("disclosures", "immediate_family_exposed"),
)
REQUIRED_AGREEMENTS = ("customer_agreement", "account_agreement")


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    passed: bool
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "reason": self.reason, "details": self.details}


def _blank(value: Any) -> bool:
    return value is None or value == "" or value == [] or (isinstance(value, list) and not any(value))


def missing_fields(sections: Mapping[str, Mapping[str, Any]], agreements: Iterable[str]) -> list[str]:
    """Dotted names of required fields that are absent or blank, then missing agreements."""
    missing = [
        f"{section}.{name}"
        for section, name in REQUIRED_FIELDS
        if _blank(sections.get(section, {}).get(name))
    ]
    signed = set(agreements)
    missing += [f"agreements.{name}" for name in REQUIRED_AGREEMENTS if name not in signed]
    return missing


def age_on(date_of_birth: date, today: date) -> int:
    years = today.year - date_of_birth.year
    if (today.month, today.day) < (date_of_birth.month, date_of_birth.day):
        years -= 1
    return years


def check_age(date_of_birth: date, today: date) -> CheckResult:
    if date_of_birth > today:
        return CheckResult("age", False, "date_of_birth is in the future")
    age = age_on(date_of_birth, today)
    if age < MINIMUM_AGE:
        return CheckResult("age", False, f"applicant must be at least {MINIMUM_AGE}", {"age": age})
    return CheckResult("age", True, details={"age": age})


_DIGITS9 = re.compile(r"\d{3}-?\d{2}-?\d{4}", re.ASCII)
_NINO = re.compile(r"[A-CEGHJ-PR-TW-Z]{2}\d{6}[A-D]", re.ASCII)


def _ssn_parts(value: str) -> tuple[int, int, int] | None:
    if not _DIGITS9.fullmatch(value):
        return None
    digits = value.replace("-", "")
    return int(digits[:3]), int(digits[3:5]), int(digits[5:])


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def check_tax_id(tax_id: str, tax_id_type: str, country_of_tax_residence: str) -> CheckResult:
    """Format rules per ``tax_id_type`` (Alpaca's enum names). The tax id itself never appears in the result."""
    name = "tax_id_format"
    value = tax_id.strip()
    if tax_id_type == "USA_SSN":
        parts = _ssn_parts(value)
        if parts is None:
            return CheckResult(name, False, "USA_SSN must be 9 digits (dashes optional)")
        area, group, serial = parts
        if area == 0 or area == 666 or area >= 900:
            return CheckResult(name, False, "USA_SSN area number is never issued (000, 666, 900-999)")
        if group == 0 or serial == 0:
            return CheckResult(name, False, "USA_SSN group (00) or serial (0000) is never issued")
        return CheckResult(name, True)
    if tax_id_type == "USA_ITIN":
        parts = _ssn_parts(value)
        if parts is None:
            return CheckResult(name, False, "USA_ITIN must be 9 digits (dashes optional)")
        area, group, _serial = parts
        if not (
            900 <= area <= 999
            and (50 <= group <= 65 or 70 <= group <= 88 or group in {90, 91, 92, 94, 95, 96, 97, 98, 99})
        ):
            return CheckResult(name, False, "USA_ITIN must start with 9 and have a valid group number")
        return CheckResult(name, True)
    if tax_id_type == "GBR_NINO":
        if not _NINO.fullmatch(value.replace(" ", "").upper()):
            return CheckResult(name, False, "GBR_NINO must be two letters, six digits and A-D")
        return CheckResult(name, True)
    if tax_id_type == "CAN_SIN":
        digits = value.replace("-", "").replace(" ", "")
        if not (len(digits) == 9 and digits.isascii() and digits.isdigit() and _luhn(digits)):
            return CheckResult(name, False, "CAN_SIN must be 9 digits with a valid check digit")
        return CheckResult(name, True)
    if tax_id_type == "NOT_SPECIFIED":
        if country_of_tax_residence == "USA":
            return CheckResult(name, False, "a US tax resident must give a USA_SSN or USA_ITIN")
        return CheckResult(name, True)
    return CheckResult(name, False, f"tax_id_type {tax_id_type!r} is not supported")


def check_country(country: str, allowed: Iterable[str]) -> CheckResult:
    allowed_set = set(allowed)
    if country not in allowed_set:
        return CheckResult(
            "address_country",
            False,
            f"residence country {country!r} is not served",
            {"allowed": sorted(allowed_set)},
        )
    return CheckResult("address_country", True)


def check_disclosures(disclosures: Mapping[str, Any]) -> CheckResult:
    """Politically exposed persons (or their immediate family) always go to a person for review."""
    flagged = [k for k in ("is_politically_exposed", "immediate_family_exposed") if disclosures.get(k)]
    if flagged:
        return CheckResult(
            "pep_disclosure", False, "politically exposed person disclosed", {"flags": flagged}
        )
    return CheckResult("pep_disclosure", True)
