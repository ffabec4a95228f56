"""Consonant skeletons: a secondary name key for queries in scripts that do not write short vowels.

Arabic (and Persian, Urdu) is an abjad: "أيمن الظواهري" writes ʾ-y-m-n and (al-)ẓ-w-ā-h-r-y, which the
ordinary transliteration renders as "'ymn ldhwhry"; against the list's "AL-ZAWAHIRI, Ayman" the token
matcher sees "ymn" vs "ayman" and fails. Both sides are therefore put into one *folded form* over consonant
classes plus vowel letters, and compared on their *skeleton* (the consonants only) with a vowel check.

Folded form of a Latin (list) token (:func:`latin_form`):
1. the article prefix "al"/"el" is removed ("alzawahiri" -> "zawahiri");
2. doubled letters collapse ("abboud" -> "aboud"; gemination is not written in Arabic);
3. digraphs fold: kh->h, gh->g, sh/ch->s, dh/th/zh->z, ph->f, dj->j, ck->k, ou->u; then q/c->k, p->b, v->w.
Folded form of an Arabic-script word (:func:`abjad_forms`): each letter maps to the same classes (ق->k,
ظ/ذ/ث->z, خ/ح/ه->h, ش/ص/س->s, ...); alif, alif maqsura and ta marbuta -> "a", waw -> "w", yeh -> "y",
hamza and ayn -> "'" (some vowel); a word-initial article (ال) is removed. Persian: a heh before a zero-width
non-joiner is the vowel -e ("خامنه‌ای" = Khamene-i), a word-final ی is -i or -a ("Y").

A skeleton is a folded form without vowel letters (a e i o u w y '). Two tokens are similar when their
skeletons are (``fuzz.ratio`` >= the matcher's cut-off) AND, when the skeletons are equal, the long vowels
the Arabic word does write agree with the Latin spelling (:func:`vowels_agree`): "أحمد" (Ahmad, ʾ-ḥ-m-d)
fits "ahmad" but not "hamid"; "حامد" (Hamid, ḥ-ā-m-d) fits "hamid" but not "ahmad".

Compound names written as two words in one script and one in another ("نصر الله" / "NASRALLAH",
"عبد الرحمن" / "ABDULRAHMAN", "سراج الدين" / "SIRAJUDDIN") are glued on both sides: an "abd" word joins the
next one, an "allah"/"al-din" word joins the previous one.

Invariants:
- Pure, deterministic functions; output is ASCII (lowercase, plus the marker "Y" for a Persian word-final yeh).
- The same consonant classes are used for list and query; the skeleton scorer is used only for abjad
  queries (see ``matcher``) and never lowers a score of the ordinary matcher.
- No token disappears: a form whose skeleton would be empty keeps its first character as skeleton.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from anyascii import anyascii

__all__ = ["abjad_forms", "latin_forms", "skeleton", "uses_abjad", "vowels_agree"]

_ABJAD_PREFIXES = ("ARABIC", "HEBREW", "SYRIAC", "THAANA")

# Arabic-script letter -> folded class. Letters not listed go through anyascii and the Latin folding.
_ARABIC: dict[str, str] = {
    "\u0627": "a", "\u0622": "a", "\u0671": "a", "\u0649": "a", "\u0629": "a", "\u06c3": "a", "\u06c0": "a",
    "\u0623": "'", "\u0625": "'", "\u0621": "'", "\u0624": "'", "\u0626": "'", "\u0639": "'",
    "\u06d5": "'", "\u0648": "w", "\u064a": "y", "\u06cc": "y", "\u06d2": "y",
    "\u0628": "b", "\u067e": "b", "\u062a": "t", "\u0637": "t", "\u0679": "t",
    "\u062b": "z", "\u0630": "z", "\u0632": "z", "\u0638": "z", "\u0698": "z",
    "\u062c": "j", "\u062d": "h", "\u062e": "h", "\u0647": "h", "\u06be": "h", "\u06c1": "h",
    "\u062f": "d", "\u0636": "d", "\u0688": "d", "\u0631": "r", "\u0691": "r",
    "\u0633": "s", "\u0634": "s", "\u0635": "s", "\u0686": "s",
    "\u063a": "g", "\u06af": "g", "\u0641": "f", "\u0642": "k", "\u0643": "k", "\u06a9": "k",
    "\u0644": "l", "\u0645": "m", "\u0646": "n", "\u06ba": "n",
}  # fmt: skip
_ARABIC_MARKS = re.compile("[\u0640\u064b-\u065f\u0670\u06d6-\u06ed\u200c\u200d]")  # harakat, tatweel, ZWNJ
_ARABIC_ARTICLE = "\u0627\u0644"
_PERSIAN_VOWEL_HEH = "\u0647\u200c"  # heh + ZWNJ; rewritten to ە (U+06D5, a vowel letter) before mapping
_PERSIAN_YEH = "\u06cc"
_ARABIC_ABD = "\u0639\u0628\u062f"
_ARABIC_JOIN_PREVIOUS = frozenset(
    {"\u0627\u0644\u0644\u0647", "\u0627\u0644\u062f\u064a\u0646"}
)  # الله الدين
_WORD = re.compile(r"\w+")

_LATIN_ABD = frozenset({"abd", "abdu", "abdul", "abdel", "abdal", "abdol", "abdoul"})
_LATIN_JOIN_PREVIOUS = frozenset(
    {"allah", "ullah", "ollah", "aldin", "uddin", "eddin", "eddine", "addin", "aldeen", "uddeen"}
)
_SUN_ARTICLES = frozenset({"ad", "adh", "ar", "as", "ash", "at", "ath", "az", "an"})
_DIGRAPHS = (
    ("kh", "h"), ("gh", "g"), ("sh", "s"), ("ch", "s"), ("dh", "z"), ("th", "z"), ("zh", "z"),
    ("ph", "f"), ("dj", "j"), ("ck", "k"), ("ou", "u"),
)  # fmt: skip
_SINGLES = str.maketrans({"q": "k", "c": "k", "p": "b", "v": "w"})
_VOWEL_LETTERS = frozenset("aeiouwy'Y")
_DOUBLED = re.compile(r"(.)\1+")
# What a written Arabic vowel letter needs in the Latin vowel run at the same place.
_NEEDS: dict[str, frozenset[str]] = {
    "a": frozenset("ae"),
    "Y": frozenset("aeiy"),  # Persian writes final -i and final -a (alif maqsura, "مجتبی") with the same ی
    "w": frozenset("uow"),
    "y": frozenset("iey"),
}


def uses_abjad(text: str) -> bool:
    """True when any letter of ``text`` belongs to a script written without short vowels."""
    return any(char.isalpha() and unicodedata.name(char, "").startswith(_ABJAD_PREFIXES) for char in text)


@functools.lru_cache(maxsize=65536)  # list names repeat tokens ("muhammad", "ali"); pure, so safe to share
def _fold_latin(text: str) -> str:
    text = _DOUBLED.sub(r"\1", text)
    for digraph, folded in _DIGRAPHS:
        text = text.replace(digraph, folded)
    return _DOUBLED.sub(r"\1", text.translate(_SINGLES))


def latin_forms(normalized: str) -> tuple[str, ...]:
    """Folded forms of a normalized (lowercase ASCII) name's tokens, compounds glued, articles dropped."""
    tokens = normalized.split()
    glued: list[str] = []
    attach_next = after_article = False
    for i, token in enumerate(tokens):
        if token in _SUN_ARTICLES and i + 1 < len(tokens):
            after_article = True  # "saif ad din": the article is dropped, "din" joins "saif"
            continue
        joins_previous = token in _LATIN_JOIN_PREVIOUS or (after_article and token in ("din", "deen"))
        after_article = False
        if attach_next or (joins_previous and glued):
            glued[-1] += token
            attach_next = False
        else:
            glued.append(token)
            attach_next = token in _LATIN_ABD
    forms = []
    for token in glued:
        if len(token) > 4 and token.startswith(("al", "el")):
            token = token[2:]
        forms.append(_fold_latin(token))
    return tuple(f for f in forms if f)


def _arabic_word_form(word: str) -> str:
    if len(word) > 3 and word.startswith(_ARABIC_ARTICLE):
        word = word[2:]
    final_yeh = word.endswith(_PERSIAN_YEH)
    if final_yeh:
        word = word[:-1]
    pieces = []
    for char in word:
        mapped = _ARABIC.get(char)
        if mapped is None:
            mapped = _fold_latin(
                re.sub(r"[^a-z]", "", anyascii(char).casefold())
            )  # digits, Hebrew, Latin, ...
        pieces.append(mapped)
    form = _DOUBLED.sub(r"\1", "".join(pieces)) + ("Y" if final_yeh else "")
    # A word-initial bare alif is a hamza seat typed without the hamza ("احمد" for "أحمد"): some vowel.
    return "'" + form[1:] if form.startswith("a") else form


def abjad_forms(text: str) -> tuple[str, ...]:
    """Folded forms of an abjad-script (or mixed) name's words, in written order, compounds glued."""
    text = unicodedata.normalize("NFKC", text)
    text = _ARABIC_MARKS.sub("", text.replace(_PERSIAN_VOWEL_HEH, "\u06d5")).casefold()
    words = _WORD.findall(text)
    glued: list[str] = []
    attach_next = False
    for word in words:
        if attach_next or (word in _ARABIC_JOIN_PREVIOUS and glued):
            glued[-1] += word
            attach_next = False
        else:
            glued.append(word)
            attach_next = word == _ARABIC_ABD
    forms: list[str] = []
    for word in glued:
        if uses_abjad(word):
            form = _arabic_word_form(word)
        else:
            forms.extend(latin_forms(" ".join(_WORD.findall(anyascii(word).casefold()))))
            continue
        if form:
            forms.append(form)
    return tuple(forms)


def skeleton(form: str) -> str:
    """The consonants of a folded form ("zawahiri" -> "zhr", "'ymn" -> "mn")."""
    consonants = "".join(c for c in form if c not in _VOWEL_LETTERS)
    return consonants or form[:1]


def _runs(form: str) -> tuple[list[str], list[str]]:
    """Split a folded form into consonants and the vowel runs around them (len(runs) == len(cons) + 1)."""
    consonants: list[str] = []
    runs: list[str] = [""]
    for char in form:
        if char in _VOWEL_LETTERS:
            runs[-1] += char
        else:
            consonants.append(char)
            runs.append("")
    return consonants, runs


def vowels_agree(abjad_form: str, latin_form: str) -> bool:
    """Whether the long vowels an abjad word writes fit a Latin spelling with the same skeleton.

    Each vowel run between consonants is compared: a written alif/waw/yeh needs a matching Latin vowel
    there (a: a/e, w: u/o/w, y: i/e/y); a Latin vowel with nothing written is a short vowel and fine,
    except at the start of a word, where Arabic always writes a carrier (alif, hamza or ayn).
    Hamza and ayn ("'") need nothing. Forms with different skeletons never agree.
    """
    abjad_cons, abjad_runs = _runs(abjad_form)
    latin_cons, latin_runs = _runs(latin_form)
    if abjad_cons != latin_cons:
        return False
    for index, (written, spelled) in enumerate(zip(abjad_runs, latin_runs, strict=True)):
        if index == 0 and bool(written) != bool(spelled):
            return False
        for letter in written:
            needs = _NEEDS.get(letter)
            if needs is not None and not needs & set(spelled):
                return False
    return True
