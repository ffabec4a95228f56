"""Loader for the OFAC SDN list in its legacy CSV form (``sdn.csv`` with optional ``alt.csv``/``add.csv``).

Format (see /work/shared/data/SOURCES.md): no header, ``-0-`` (often ``-0- `` with a trailing space) is
null, text is CP-1252, a file may end with a 0x1A (DOS end-of-file) byte. ``alt.csv`` and ``add.csv`` join
to ``sdn.csv`` by ``ent_num``.

Invariants:
- Nothing that names a sanctioned party is ever dropped. Rows that look wrong are kept and reported in
  ``SanctionsList.anomalies`` (a duplicate ``ent_num`` keeps both entries; aliases and addresses join to the
  first entry with that number, whose row came first in ``sdn.csv``).
- ``SanctionsList.version`` is ``"<directory name>@<first 16 hex of sha256>"``; the digest covers the exact
  bytes of every file read, so two lists with the same version string were built from identical input.
- Entries keep the file order of ``sdn.csv``; every collection on the value types is a tuple (immutable).
"""

from __future__ import annotations

import calendar
import csv
import hashlib
import io
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

__all__ = [
    "Address",
    "Alias",
    "DobRange",
    "SanctionsList",
    "SdnEntry",
    "VersionDiff",
    "diff_versions",
    "load_sdn_list",
    "parse_dob_ranges",
]

SDN_FILE = "sdn.csv"
ALT_FILE = "alt.csv"
ADD_FILE = "add.csv"

SDN_COLUMNS = 12
ALT_COLUMNS = 5
ADD_COLUMNS = 6

SDN_TYPES = ("individual", "entity", "vessel", "aircraft")


@dataclass(frozen=True, slots=True)
class Alias:
    """An alternate name: ``aka``/``fka``/``nka`` from alt.csv, or ``weak_aka`` from remarks."""

    name: str
    alias_type: str
    alt_num: int | None = None
    remarks: str | None = None


@dataclass(frozen=True, slots=True)
class Address:
    add_num: int
    address: str | None
    city_state_postal: str | None
    country: str | None
    remarks: str | None


@dataclass(frozen=True, slots=True)
class DobRange:
    """A date of birth as the inclusive range it denotes ("1960" is all of 1960, "circa 1960" 1959-1961)."""

    earliest: date
    latest: date
    text: str

    def contains(self, day: date) -> bool:
        return self.earliest <= day <= self.latest

    @property
    def is_exact_day(self) -> bool:
        return self.earliest == self.latest


@dataclass(frozen=True, slots=True)
class SdnEntry:
    ent_num: int
    name: str
    sdn_type: str  # one of SDN_TYPES; the CSV's null type means "entity"
    programs: tuple[str, ...]
    title: str | None = None
    remarks: str | None = None
    aliases: tuple[Alias, ...] = ()
    addresses: tuple[Address, ...] = ()
    dates_of_birth: tuple[DobRange, ...] = ()
    nationalities: tuple[str, ...] = ()

    @property
    def countries(self) -> tuple[str, ...]:
        """Distinct address countries, in file order."""
        return tuple(dict.fromkeys(a.country for a in self.addresses if a.country))

    @property
    def is_individual(self) -> bool:
        return self.sdn_type == "individual"


@dataclass(frozen=True, slots=True)
class SanctionsList:
    label: str  # the directory name, by convention the publication date
    sha256: str  # digest of the input files' bytes
    entries: tuple[SdnEntry, ...]
    files: tuple[str, ...]  # which of sdn/alt/add were present
    anomalies: tuple[str, ...] = ()
    _by_ent_num: dict[int, SdnEntry] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for entry in self.entries:
            self._by_ent_num.setdefault(entry.ent_num, entry)

    @property
    def version(self) -> str:
        return f"{self.label}@{self.sha256[:16]}"

    @property
    def has_aliases(self) -> bool:
        return ALT_FILE in self.files

    def get(self, ent_num: int) -> SdnEntry | None:
        """The entry with this number (the first one, if the file repeats a number)."""
        return self._by_ent_num.get(ent_num)

    @property
    def ent_nums(self) -> frozenset[int]:
        return frozenset(self._by_ent_num)


# ---------------------------------------------------------------------------------------------- parsing


def _read_rows(data: bytes) -> list[list[str]]:
    text = data.decode("cp1252", errors="replace")
    text = text.rstrip("\x1a\r\n")
    return [row for row in csv.reader(io.StringIO(text)) if row and any(cell.strip() for cell in row)]


def _cell(value: str) -> str | None:
    value = value.strip()
    return None if value in ("", "-0-") else value


def _int(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.isdigit() else None


_MONTHS = {name.lower(): number for number, name in enumerate(calendar.month_abbr) if name}
_DAY_MONTH_YEAR = r"(?:(\d{1,2}) )?(?:([A-Za-z]{3}) )?(\d{4})"
_DOB_RE = re.compile(r"\bDOB (circa )?" + _DAY_MONTH_YEAR + r"(?: to " + _DAY_MONTH_YEAR + r")?")
_WEAK_AKA_RE = re.compile(r"\ba\.k\.a\. '([^;]+?)'(?=[;.,]|$)")
_NATIONALITY_RE = re.compile(r"\b(?:nationality|citizen) ([A-Z][A-Za-z .'-]+?)(?=[;.]|$)")


def _range_bounds(day: str | None, month: str | None, year: str) -> tuple[date, date] | None:
    y = int(year)
    m = _MONTHS.get(month.lower()) if month else None
    if month and m is None:
        return None
    try:
        if m is None:
            return date(y, 1, 1), date(y, 12, 31)
        if day is None:
            return date(y, m, 1), date(y, m, calendar.monthrange(y, m)[1])
        exact = date(y, m, int(day))
    except ValueError:
        return None
    return exact, exact


def parse_dob_ranges(remarks: str | None) -> tuple[DobRange, ...]:
    """Dates of birth in OFAC remarks: ``DOB 12 Jan 1960``, ``alt. DOB 1962``, ``DOB circa 1958``,
    ``DOB Jan 1960``, ``DOB 1955 to 1957``, ``DOB 01 Jan 1955 to 31 Dec 1957``.

    Unparseable dates are skipped."""
    if not remarks:
        return ()
    found: list[DobRange] = []
    for match in _DOB_RE.finditer(remarks):
        circa, d1, m1, y1, d2, m2, y2 = match.groups()
        start = _range_bounds(d1, m1, y1)
        if start is None:
            continue
        earliest, latest = start
        if y2 is not None:
            end = _range_bounds(d2, m2, y2)
            if end is None:
                continue
            latest = end[1]
        if circa:
            # "circa" is a guess; one year either side is the usual reading in screening practice.
            earliest = earliest.replace(year=earliest.year - 1, month=1, day=1)
            latest = latest.replace(year=latest.year + 1, month=12, day=31)
        found.append(DobRange(earliest=earliest, latest=latest, text=match.group(0).removeprefix("DOB ")))
    return tuple(found)


def _weak_aliases(remarks: str | None) -> tuple[Alias, ...]:
    if not remarks:
        return ()
    return tuple(Alias(name=m.group(1), alias_type="weak_aka") for m in _WEAK_AKA_RE.finditer(remarks))


def _nationalities(remarks: str | None) -> tuple[str, ...]:
    if not remarks:
        return ()
    return tuple(dict.fromkeys(m.group(1).strip() for m in _NATIONALITY_RE.finditer(remarks)))


def _programs(value: str) -> tuple[str, ...]:
    # Several programs are written "A] [B" inside one field.
    cell = _cell(value)
    if cell is None:
        return ()
    return tuple(p.strip(" []") for p in cell.split("] [") if p.strip(" []"))


def load_sdn_list(directory: Path) -> SanctionsList:
    """Parse ``sdn.csv`` (required) and ``alt.csv``/``add.csv`` (when present) from ``directory``."""
    directory = Path(directory)
    sdn_path = directory / SDN_FILE
    if not sdn_path.is_file():
        raise FileNotFoundError(f"{sdn_path} not found")

    digest = hashlib.sha256()
    raw: dict[str, bytes] = {}
    for name in (SDN_FILE, ALT_FILE, ADD_FILE):
        path = directory / name
        if path.is_file():
            raw[name] = path.read_bytes()
            # Name and length framing so moving bytes between files changes the digest.
            digest.update(f"{name}\0{len(raw[name])}\0".encode())
            digest.update(raw[name])

    anomalies: list[str] = []
    aliases: dict[int, list[Alias]] = {}
    addresses: dict[int, list[Address]] = {}

    sdn_rows = _read_rows(raw[SDN_FILE])
    known: set[int] = set()
    for row in sdn_rows:
        ent = _int(row[0]) if row else None
        if ent is not None:
            if ent in known:
                anomalies.append(f"{SDN_FILE}: ent_num {ent} appears more than once ({row[1]!r}); kept both")
            known.add(ent)

    for row in _read_rows(raw.get(ALT_FILE, b"")):
        ent = _int(row[0])
        if len(row) != ALT_COLUMNS or ent is None:
            anomalies.append(f"{ALT_FILE}: malformed row {row!r}; skipped")
            continue
        if ent not in known:
            anomalies.append(f"{ALT_FILE}: alias {row[3]!r} for unknown ent_num {ent}; skipped")
            continue
        if row[4] == "":
            # Real rows always carry the "-0- " null; an empty cell marks a hand-edited row.
            anomalies.append(f"{ALT_FILE}: alias row {row!r} has an empty remarks cell; kept")
        alias_name = _cell(row[3])
        if alias_name:
            aliases.setdefault(ent, []).append(
                Alias(
                    name=alias_name,
                    alias_type=(_cell(row[2]) or "aka").lower(),
                    alt_num=_int(row[1]),
                    remarks=_cell(row[4]),
                )
            )

    for row in _read_rows(raw.get(ADD_FILE, b"")):
        ent = _int(row[0])
        if len(row) != ADD_COLUMNS or ent is None:
            anomalies.append(f"{ADD_FILE}: malformed row {row!r}; skipped")
            continue
        if ent not in known:
            anomalies.append(f"{ADD_FILE}: address {row[1]} for unknown ent_num {ent}; skipped")
            continue
        addresses.setdefault(ent, []).append(
            Address(
                add_num=_int(row[1]) or 0,
                address=_cell(row[2]),
                city_state_postal=_cell(row[3]),
                country=_cell(row[4]),
                remarks=_cell(row[5]),
            )
        )

    entries: list[SdnEntry] = []
    joined: set[int] = set()
    for row in sdn_rows:
        ent = _int(row[0])
        entry_name = _cell(row[1]) if len(row) > 1 else None
        if len(row) != SDN_COLUMNS or ent is None or entry_name is None:
            anomalies.append(f"{SDN_FILE}: malformed row {row!r}; skipped")
            continue
        remarks = _cell(row[11])
        first = ent not in joined
        joined.add(ent)
        strong = tuple(aliases.get(ent, ())) if first else ()
        entries.append(
            SdnEntry(
                ent_num=ent,
                name=entry_name,
                sdn_type=(_cell(row[2]) or "entity").lower(),
                programs=_programs(row[3]),
                title=_cell(row[4]),
                remarks=remarks,
                aliases=strong + _weak_aliases(remarks),
                addresses=tuple(addresses.get(ent, ())) if first else (),
                dates_of_birth=parse_dob_ranges(remarks),
                nationalities=_nationalities(remarks),
            )
        )

    return SanctionsList(
        label=directory.name,
        sha256=digest.hexdigest(),
        entries=tuple(entries),
        files=tuple(raw),
        anomalies=tuple(anomalies),
    )


# ---------------------------------------------------------------------------------------------- diffing


@dataclass(frozen=True, slots=True)
class VersionDiff:
    """What changed between two list versions, by ``ent_num``.

    ``rescreen`` is what a re-screening job needs: entries that are new, or whose set of screenable names
    (primary name plus strong aliases) gained a name. Entries that only lost names, or changed remarks or
    programs, cannot create a new hit.
    """

    old_version: str
    new_version: str
    added: frozenset[int]
    removed: frozenset[int]
    changed: frozenset[int]
    rescreen: frozenset[int]


def _screenable_names(entry: SdnEntry) -> frozenset[str]:
    return frozenset([entry.name, *(a.name for a in entry.aliases if a.alias_type != "weak_aka")])


def diff_versions(old: SanctionsList, new: SanctionsList) -> VersionDiff:
    """Compare two versions. ``changed`` covers name, aliases, type and programs of entries in both."""
    added = new.ent_nums - old.ent_nums
    removed = old.ent_nums - new.ent_nums
    changed: set[int] = set()
    gained_names: set[int] = set()
    for ent in new.ent_nums & old.ent_nums:
        before, after = old.get(ent), new.get(ent)
        assert before is not None
        assert after is not None
        names_before, names_after = _screenable_names(before), _screenable_names(after)
        if (
            names_before != names_after
            or before.sdn_type != after.sdn_type
            or before.programs != after.programs
        ):
            changed.add(ent)
        if names_after - names_before:
            gained_names.add(ent)
    return VersionDiff(
        old_version=old.version,
        new_version=new.version,
        added=frozenset(added),
        removed=frozenset(removed),
        changed=frozenset(changed),
        rescreen=frozenset(added | gained_names),
    )
