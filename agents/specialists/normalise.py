"""Normalisation hooks for extracted fields: dates to ISO, amounts to plain decimals.

Why: receipts write one date a dozen ways (``25/12/2018``, ``25-12-18``, ``25 DEC 2018``) and
amounts with currencies and separators (``RM 1,234.50``). Downstream systems want one form.
Each hook returns what it does not recognise unchanged, so a hook can never lose a value.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
_MONTHS |= {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTHS["sept"] = 9
_TIME = re.compile(r"\s+\d{1,2}:\d{2}(?::\d{2})?\s*(?:[AaPp]\.?[Mm]\.?)?$")
_YMD = re.compile(r"(\d{4})([-/.])(\d{1,2})\2(\d{1,2})")
_NUMERIC = re.compile(r"(\d{1,2})([-/. ])(\d{1,2})\2(\d{4}|\d{2})")
_DAY_MONTH = re.compile(r"(\d{1,2})[-/. ]*([A-Za-z]{3,9})\.?[-/., ]*(\d{4}|\d{2})")
_MONTH_DAY = re.compile(r"([A-Za-z]{3,9})\.?[-/. ]*(\d{1,2})(?:st|nd|rd|th)?,?[-/. ]*(\d{4}|\d{2})")


def _year(text: str) -> int:
    """Two-digit years are 2000-2069 or 1970-1999 (receipts are recent)."""
    y = int(text)
    return y if len(text) == 4 else (2000 + y if y < 70 else 1900 + y)


def _iso(y: int, m: int, d: int) -> str | None:
    try:
        return date(y, m, d).isoformat()
    except ValueError:
        return None


def _day_or_month_first(a: int, b: int, y: int, dayfirst: bool | None) -> str | None:
    """``a/b/y``: the one reading that is a real date, or ``dayfirst``'s when both are."""
    as_dm, as_md = _iso(y, b, a), _iso(y, a, b)
    if as_dm and as_md and as_dm != as_md:
        return None if dayfirst is None else (as_dm if dayfirst else as_md)
    return as_dm or as_md


def normalise_date(value: Any, *, dayfirst: bool | None = True) -> Any:
    """A receipt date as ISO ``YYYY-MM-DD``, or ``value`` unchanged when it is not one.

    Understands ``25/12/2018``, ``25-12-18``, ``25.12.18``, ``2018-12-25``, ``2018/12/25``,
    ``25 DEC 2018``, ``25-Dec-18``, ``25/DEC/2018``, ``Dec 25, 2018``, ``20181225`` and
    ``25122018``, in parentheses or followed by a time (``25/12/2018 8:13:39 PM``). Two-digit
    years are 20xx below 70, else 19xx. ``9/3/2018`` reads both ways: ``dayfirst=True`` (the
    default; SROIE's Malaysian receipts and most of the world write day first) gives
    2018-03-09, ``False`` gives 2018-09-03, ``None`` leaves it as it is. A reading that is no
    real date (``25/12`` cannot be month 25) is never chosen. Anything else, and non-strings,
    come back unchanged.
    """
    if not isinstance(value, str):
        return value
    text = _TIME.sub("", value.strip().strip("()[]").strip()).strip()
    if m := _YMD.fullmatch(text):
        return _iso(int(m[1]), int(m[3]), int(m[4])) or value
    if m := _NUMERIC.fullmatch(text):
        return _day_or_month_first(int(m[1]), int(m[3]), _year(m[4]), dayfirst) or value
    if (m := _DAY_MONTH.fullmatch(text)) and m[2].lower() in _MONTHS:
        return _iso(_year(m[3]), _MONTHS[m[2].lower()], int(m[1])) or value
    if (m := _MONTH_DAY.fullmatch(text)) and m[1].lower() in _MONTHS:
        return _iso(_year(m[3]), _MONTHS[m[1].lower()], int(m[2])) or value
    if re.fullmatch(r"\d{8}", text):  # 20181225, else 25122018 (or 12252018)
        iso = _iso(int(text[:4]), int(text[4:6]), int(text[6:]))
        if iso and 1900 <= int(text[:4]) <= 2099:
            return iso
        return _day_or_month_first(int(text[:2]), int(text[2:4]), int(text[4:]), dayfirst) or value
    return value


_CURRENCY = r"(?:RM|MYR|USD|US\$|SGD|S\$|EUR|GBP|\$|€|£|¥)"
_AMOUNT = re.compile(rf"(-)?\s*(?:{_CURRENCY}\s*)?(-)?\s*([\d.,]+)\s*(?:{_CURRENCY})?", re.I)


def normalise_amount(value: Any) -> Any:
    """A money amount as a plain decimal string (``"RM 1,234.5"`` -> ``"1234.50"``).

    Drops a currency code or symbol before or after the number (RM, MYR, $, US$, S$, SGD, USD,
    EUR, GBP, €, £, ¥) and thousands separators (``1,234.50``, ``1.234,50``, ``1 234.50``);
    a lone comma before one or two digits is a decimal comma (``14,10``). At least two decimals
    (``14.1`` -> ``14.10``), more when given; a leading minus is kept. Anything else (``"FREE"``,
    ``"1,23,4"``), and non-strings, come back unchanged.
    """
    if not isinstance(value, str):
        return value
    squeezed = re.sub(r"(?<=\d) (?=\d{3}\b)", "", value.strip())  # "1 234.50"
    m = _AMOUNT.fullmatch(squeezed)
    if not m or (m[1] and m[2]):
        return value
    number = m[3]
    if re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?|\d+(\.\d+)?", number):
        number = number.replace(",", "")
    elif re.fullmatch(r"\d{1,3}(\.\d{3})+(,\d+)?|\d+,\d{1,2}", number):
        number = number.replace(".", "").replace(",", ".")
    else:
        return value
    try:
        amount = Decimal(number)
    except InvalidOperation:  # pragma: no cover - the patterns above admit only decimals
        return value
    places = max(2, -amount.as_tuple().exponent)
    sign = "-" if (m[1] or m[2]) and amount != 0 else ""
    return f"{sign}{amount:.{places}f}"


HOOKS: dict[str, Callable[[Any], Any]] = {"date": normalise_date, "amount": normalise_amount}
