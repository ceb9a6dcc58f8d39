"""Which input columns the prediction log hashes or drops before anything is written.

Two sources, per model:

* ``logging.sensitive: {model: {column: hash | drop | raw}}`` in ``serve.yaml``, exact column names;
* by default (``logging.hash_personal_columns: true``), every column whose *name* looks like personal data
  (:data:`PERSONAL_PATTERNS`) is hashed as if it were listed with ``hash``. ``raw`` keeps one such column as it
  is; ``hash_personal_columns: false`` turns the rule off for every column.

A name is split into lowercase words (``customerEmail``, ``customer-email`` and ``CUSTOMER_EMAIL`` are all
``customer_email``) and a pattern must match whole words, so ``email`` matches ``email`` and ``billing_email``
but ``zip`` does not match ``ip`` and ``emailed`` is not ``email``. The list is deliberately short: names that
almost always hold data about a person. It is not a detector of personal data: a column named ``x3`` holding
phone numbers is not found, so list such columns under ``sensitive``.

>>> names = ["email", "customerEmail", "amount", "zip", "client_ip", "dob", "merchant_name", "Name"]
>>> [name for name in names if looks_personal(name)]
['email', 'customerEmail', 'client_ip', 'dob', 'Name']
>>> rules = ColumnRules({"email": "raw", "channel": "drop"}, hash_personal=True)
>>> rules.get("email"), rules.get("channel"), rules.get("phone_number"), rules.get("amount")
(None, 'drop', 'hash', None)
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping

__all__ = ["PERSONAL_PATTERNS", "ColumnRules", "looks_personal", "words"]

PERSONAL_PATTERNS: tuple[str, ...] = (
    # contact
    r"e_?mail(_address)?",
    r"(tele)?phone(_?(number|no|num|nr))?",
    r"(mobile|cell)(_?(phone|number|no|num|nr))",
    r"msisdn",
    r"(street|home|postal|mailing|billing|shipping|residential)?_?address(_?line_?\d*)?",
    # names of people
    r"(first|last|given|family|middle|full|maiden|sur|nick)_?name",
    r"surname",
    r"(customer|user|client|person|patient|holder|cardholder|account_holder|contact)_?name",
    r"^name$",  # a column called just "name" (not product_name)
    # national and official identifiers
    r"ssn",
    r"social_security(_?(number|no|num|nr))?",
    r"(national|tax|personal)_?id(_?(number|no|num|nr))?",
    r"passport(_?(number|no|num|nr|id))?",
    r"(driver|drivers|driving)_?licen[cs]e(_?(number|no|num|nr))?",
    # payment
    r"iban",
    r"(credit_?|debit_?)?card_?(number|no|num|nr)",
    r"cc_?(number|no|num|nr)",
    r"cvv|cvc|cvv2",
    r"account_?(number|no|num|nr)",
    # birth
    r"dob",
    r"(date_of_)?birth(_?(date|day|dt))?",
    r"birthdate|birthday",
    # network
    r"ip(v4|v6)?(_?(address|addr))?",
    # who the row is about
    r"(user|customer|client|patient|member|person|subscriber)_?id",
)
"""Whole-word regular expressions over :func:`words` of a column name; a name matching any is personal."""

_PERSONAL = re.compile("|".join(f"(?:^|_)(?:{pattern})(?:_|$)" for pattern in PERSONAL_PATTERNS))
# ("^name$" inside "(?:^|_)(?:...)(?:_|$)" still matches only the whole name)


def words(name: str) -> str:
    """A column name as lowercase words joined by ``_`` (camelCase split, other characters as separators).

    >>> words("customerEmail"), words("Date-of-Birth"), words("IPAddress"), words("card number 2")
    ('customer_email', 'date_of_birth', 'ip_address', 'card_number_2')
    """
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", spaced)
    return re.sub(r"[^a-z0-9]+", "_", spaced.lower()).strip("_")


@functools.lru_cache(maxsize=4096)
def looks_personal(name: str) -> bool:
    """Whether the column name ``name`` matches one of :data:`PERSONAL_PATTERNS` (whole words).

    >>> looks_personal("billing_address"), looks_personal("ip_count"), looks_personal("tip"), looks_personal("pane")
    (True, True, False, False)
    """
    return _PERSONAL.search(words(name)) is not None


class ColumnRules(Mapping[str, str]):
    """What the log does with each input column of one model: ``"hash"``, ``"drop"``, or nothing (absent).

    ``explicit`` is the model's ``logging.sensitive`` entry; a column it does not name is hashed when
    ``hash_personal`` is on and its name looks personal. Iterating gives the explicitly hashed or dropped
    columns only (the personal ones depend on the names a request has).
    """

    def __init__(self, explicit: Mapping[str, str] | None, *, hash_personal: bool) -> None:
        self.explicit = dict(explicit or {})
        self.hash_personal = hash_personal

    def __getitem__(self, name: str) -> str:
        how = self.explicit.get(name)
        if how in ("hash", "drop"):
            return how
        if how is None and self.hash_personal and looks_personal(name):
            return "hash"
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return (name for name, how in self.explicit.items() if how in ("hash", "drop"))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def hidden(self, names: Iterable[str]) -> set[str]:
        """The columns among ``names`` (and those listed explicitly) whose logged values are hashed or dropped.

        >>> sorted(ColumnRules({"x": "drop"}, hash_personal=True).hidden(["email", "amount"]))
        ['email', 'x']
        """
        return set(self) | {name for name in names if self.get(name) is not None}
