"""Masking of personal data (e-mail addresses, phone numbers) in ticket text before it is logged or shown.

`mask_personal_data` is a pure function; `TicketflowConfig.mask_personal_data` decides whether the predictor
calls it. Phone detection leans towards leaving numbers alone that IT tickets are full of: dates, times, IP and
MAC addresses, versions, error codes, ticket and invoice numbers, amounts, ports. A number counts as a phone
number when it has 7 to 15 digits and either starts with `+`, has a group in parentheses, or has the shape of a
national number (groups split by space, dot or hyphen that are not a date, an address, a version or an amount).

`snippet` is how ticket text is shown to people outside the log (similar tickets in an answer, examples in the
evaluation report): masked first, so an address the cut would halve is still caught, then shortened on a word
boundary. It lives here, on the lowest floor, so the report and the server mask alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable

EMAIL_TOKEN = "[email]"  # nosec B105  # a masking placeholder, not a password
PHONE_TOKEN = "[phone]"  # nosec B105  # a masking placeholder, not a password
ELLIPSIS = "…"  # ends a shortened snippet

# local@domain.tld: the local part may hold dots (not leading, trailing or doubled), plus signs, hyphens, underscores
# and %, the domain one or more labels (subdomains) and a letters-only TLD. Not "@channel", "user@", "user@localhost",
# "pkg@1.2.3" or "icon@2x.png" (an asset name, not an address). It starts only at the start of a word.
_EMAIL = re.compile(
    r"(?<![\w.%+\-])"  # not in the middle of a word or of another address
    r"[\w%+\-]+(?:\.[\w%+\-]+)*"  # local part
    r"@(?:[^\W_](?:[\w\-]*[^\W_])?\.)+"  # domain labels, each ending in a dot
    r"(?!(?:png|jpe?g|gif|svg|webp|ico)\b)"  # image names like icon@2x.png
    r"[^\W\d_]{2,63}"  # top-level domain: letters only
    r"(?![\w\-]|\.[^\W_])"  # nothing glued on that would make it a longer name
)

# A run of digit groups that *might* be a phone number: optional +country code, an optional group in parentheses
# ("(555)", the British trunk "(0)"), then digit groups separated by one space, dot or hyphen. It is taken whole
# or not at all, so the checks in `_is_phone` see the complete number and never a slice of a longer one: it does
# not start inside a word, number, amount ($1,299.00), path or reference (#4471, INV-2024-0042), after a time's
# colon (12:34:56.789012) or right after a masked token, and it does not end where a word, an address or another
# group (a date's time, an IP address's port) follows.
_PHONE_CANDIDATE = re.compile(
    r"(?<![\w+\-.,/#$€£@\]])(?<!\d:)"  # not a continuation of something else
    r"(?:\+\d{1,3}[ .\-]?)?"  # country code: +1, +49, +44
    r"(?:\(\d{1,5}\)[ .\-]?)?"  # area code or trunk prefix in parentheses: (555), (0)
    r"\d{1,12}(?:[ .\-]\d{1,12})*"  # digit groups
    r"(?![\w@]|[ .,:\-/]\d)"  # ... all of them
)

# Separator-split numbers that have enough digits for a phone number but are something else.
_NOT_A_PHONE = re.compile(
    r"\d{4}([-.])\d{1,2}\1\d{1,2}"  # year-first dates: 2024-05-01, 2024.05.01
    r"|\d{1,2}([-.])\d{1,2}\2\d{4}"  # day- or month-first dates: 01.05.2024, 05-01-2024
    r"|\d{1,3}(?:\.\d{1,3}){3}"  # IPv4 addresses: 192.168.1.1
    r"|\d\d(?:-\d\d){5}|\d{4}(?:\.\d{4}){2}"  # MAC addresses that happen to be all digits: 00-11-22-33-44-55
    r"|\d{1,3}([ .])\d{3}(?:\3\d{3})*"  # thousands separators and lists of 3-digit codes: 1.299.000, 500 502 503
    r"|(?:19|20)\d\d-\d+"  # year-prefixed references and year ranges: 2024-0042, 2023-2024
)

# One unbroken run of digits is a phone number only in the national form with a trunk prefix (01761234567);
# other long runs are order numbers, serials, epoch timestamps or zero-padded ids.
_NATIONAL_COMPACT = re.compile(r"0[1-9]\d{8,10}")

_DIGIT_GROUP = re.compile(r"\d+")  # one digit group of a candidate
_SEPARATOR = re.compile(r"(?<=\d)[ .\-](?=\d)")  # a separator between two digit groups

# Space-only numbers without + or parentheses are often lists ("ports 80 443 8080") or amounts ("1 299 000"),
# so they count only with a trunk prefix (0176 12345678, 030 1234567) or in North American shapes.
_NORTH_AMERICAN_SHAPES = {(3, 4), (3, 3, 4), (1, 3, 3, 4)}  # 555 0134, 555 010 4477, 1 800 555 0199

_MAX_GROUPS = 8  # more groups than any phone number: a table of numbers, not worth trying prefixes of


def mask_personal_data(text: str, emails: bool = True, phones: bool = True) -> str:
    """Replaces e-mail addresses with `[email]` and phone numbers with `[phone]`.

    Masking is idempotent (masking twice gives the same text as masking once) and leaves everything around a
    masked value as it was. E-mail addresses are masked first, so digits inside an address are never taken for
    a phone number.

    Args:
        text: Ticket text.
        emails: Mask e-mail addresses.
        phones: Mask phone numbers (7 to 15 digits, optionally with `+` and a country code, groups split by
            space, dot, hyphen or parentheses).

    Returns:
        The text with the chosen kinds of personal data replaced; the text itself when neither is chosen.
    """
    if emails and "@" in text:
        text = _EMAIL.sub(EMAIL_TOKEN, text)
    if phones:
        text = _mask_phones(text)
    return text


def _mask_phones(text: str) -> str:
    return _PHONE_CANDIDATE.sub(_replace_phone, text)


def _replace_phone(match: re.Match[str]) -> str:
    """Masks a candidate, or its longest leading part that is a phone number ("555-0192 2 times")."""
    candidate = match.group()
    if len(_DIGIT_GROUP.findall(candidate)) > _MAX_GROUPS:
        return candidate
    end = len(candidate)
    while end > 0:
        if _is_phone(candidate[:end]):
            # The rest goes through the same masking, so a second pass finds nothing new (idempotence).
            return PHONE_TOKEN + _mask_phones(candidate[end:])
        end = candidate.rfind(" ", 0, end)
    return candidate


def _is_phone(candidate: str) -> bool:
    """Decides whether a whole candidate from `_PHONE_CANDIDATE` is a phone number."""
    digits = sum(c.isdigit() for c in candidate) - (1 if "(0)" in candidate else 0)
    if not 7 <= digits <= 15:  # E.164 allows at most 15 digits
        return False
    if candidate.startswith("+") or "(" in candidate:
        return True
    groups = _DIGIT_GROUP.findall(candidate)
    if len(groups) == 1:
        return bool(_NATIONAL_COMPACT.fullmatch(candidate))
    if _NOT_A_PHONE.fullmatch(candidate):
        return False
    if any(len(group) == 1 for group in groups[1:]):  # versions and builds: 10.0.19045.3803, 4.18.0-513
        return False
    separators = set(_SEPARATOR.findall(candidate))
    if separators == {"."} and len(groups) == 2:  # a decimal number: 3.14159265
        return False
    if separators == {" "}:
        return groups[0].startswith("0") or tuple(map(len, groups)) in _NORTH_AMERICAN_SHAPES
    return True


# A space before a letter: no e-mail address contains a space, and a phone number's groups continue only with a digit
# after a separator, so masking the text up to such a space masks that part exactly as masking the whole text does.
_SAFE_CUT = re.compile(r" (?=[^\W\d_])")


def _masked_window(text: str, max_chars: int, mask: Callable[[str], str]) -> str:
    """`mask(text)`, or a masked start of it long enough for a snippet of `max_chars` to read the same."""
    cut = _SAFE_CUT.search(text, 2 * max_chars)
    if cut is None:
        return mask(text)
    masked = mask(text[: cut.start()])
    # Tokens may be shorter than what they replace: the window must still be longer than the snippet, so that the
    # cut (and its ellipsis) happens as it would on the whole text.
    return masked if len(masked) > max_chars else mask(text)


def snippet(text: str, max_chars: int, mask: Callable[[str], str] | None = mask_personal_data) -> str:
    """A short, masked excerpt of a ticket's text: whitespace collapsed, masked, cut on a word boundary.

    Masking runs before the cut, so a value the cut would halve ("jo@exam…") is masked all the same. It reads the
    text only up to the first space before a letter past twice `max_chars` (`_masked_window`): an answer shows
    five similar tickets, and masking each one's whole text on every request cost more than the snippet needs.
    A text longer than `max_chars` is cut at the last space that keeps it within `max_chars` including the
    ellipsis; a first word longer than that is cut inside the word.

    Args:
        text: Ticket text (None or empty gives "").
        max_chars: Longest snippet, in characters, ellipsis included; at least 2.
        mask: Applied to the text first (`mask_personal_data`, or the predictor's own choice); None leaves it as is.

    Returns:
        The text when it fits, else its start ending in `…`.

    Raises:
        ValueError: `max_chars` is below 2 (no room for a character and the ellipsis).
    """
    if max_chars < 2:
        raise ValueError(f"max_chars must be at least 2, got {max_chars}")
    text = " ".join((text or "").split())
    if mask is not None:
        text = _masked_window(text, max_chars, mask)
    if len(text) <= max_chars:
        return text
    room = max_chars - len(ELLIPSIS)
    cut = text.rfind(" ", 0, room + 1)  # a space right after the last kept character is a word boundary too
    kept = text[:cut] if cut > 0 else text[:room]
    return kept.rstrip(" ,;:-") + ELLIPSIS
