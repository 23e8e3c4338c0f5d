"""Building a message's element tree and reading one back, by paths of ISO 20022 short tags
in the message's namespace; what is read is converted with the element's path in any error."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import TypeVar
from xml.etree import ElementTree
from xml.etree.ElementTree import Element

from bo_iso20022.schemas import InvalidMessage, load, namespace_of

T = TypeVar("T")

# xs:date and the date part of xs:dateTime, with a 4-digit year (what Python's date holds);
# a time zone on a date does not move the day.
_DATE = re.compile(r"\s*(\d{4}-\d{2}-\d{2})(?:Z|[+-]\d{2}:\d{2})?\s*")
_DATE_TIME = re.compile(r"\s*(\d{4}-\d{2}-\d{2})T.*", re.DOTALL)


def document(message_type: str) -> Element:
    """The root of a message being built. Its tags are left unqualified and the namespace is
    declared as the default one (xmlns), so that the message reads as ISO 20022 messages
    usually do; ElementTree would otherwise write ns0: prefixes, and its default_namespace
    option refuses the unqualified Ccy attribute."""
    return Element("Document", {"xmlns": namespace_of(message_type)})


def add(parent: Element, name: str, text: str | None = None, **attributes: str) -> Element:
    element = ElementTree.SubElement(parent, name, attributes)
    element.text = text
    return element


def add_path(parent: Element, path: str, text: str) -> Element:
    """add for each step of path ("Dt/Dt"); the text goes to the last."""
    *steps, last = path.split("/")
    for step in steps:
        parent = add(parent, step)
    return add(parent, last, text)


def to_bytes(root: Element, message_type: str) -> bytes:
    """The message as UTF-8 XML, read back and checked against its XSD. The inputs were
    checked when made, so a schema error here is a bug in this library: a ValueError, not
    InvalidMessage."""
    message: bytes = ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)
    try:
        load(message, expected=message_type)
    except InvalidMessage as error:
        raise ValueError(f"rendered message is not schema-valid: {error}") from None
    return message


class Reader:
    """Reads a schema-valid message. Paths are relative to Document ("A/B/C"); an element
    the schema allows to be absent but this library needs is an InvalidMessage."""

    def __init__(self, message_type: str, root: Element) -> None:
        self.message_type = message_type
        self._namespace = namespace_of(message_type)
        self._root = root

    def _qualified(self, path: str) -> str:
        return "/".join(f"{{{self._namespace}}}{step}" for step in path.split("/"))

    def error(self, reason: str, path: str = "") -> InvalidMessage:
        full_path = f"/Document/{path}" if path else "/Document"
        return InvalidMessage(reason, message_type=self.message_type, path=full_path)

    def has(self, path: str) -> bool:
        return self._root.find(self._qualified(path)) is not None

    def optional_text(self, path: str) -> str | None:
        element = self._root.find(self._qualified(path))
        if element is None:
            return None
        return element.text or ""

    def text(self, path: str) -> str:
        found = self.optional_text(path)
        if found is None:
            raise self.error("missing; this library needs it", path)
        return found

    def texts(self, path: str) -> tuple[str, ...]:
        return tuple(element.text or "" for element in self._root.iterfind(self._qualified(path)))

    def attribute(self, path: str, name: str) -> str:
        element = self._root.find(self._qualified(path))
        if element is None or name not in element.attrib:
            raise self.error(f"missing attribute {name}", path)
        return element.attrib[name]

    def checked(self, path: str, check: Callable[[str], str]) -> str:
        """The text at path, passed through check (a values.check_*)."""
        return self.convert(path, self.text(path), check)

    def optional_checked(self, path: str, check: Callable[[str], str]) -> str | None:
        text = self.optional_text(path)
        return None if text is None else self.convert(path, text, check)

    def convert(self, path: str, text: str, converter: Callable[[str], T]) -> T:
        try:
            return converter(text)
        except ValueError as error:
            raise self.error(str(error), path) from None

    def decimal(self, path: str) -> Decimal:
        text = self.text(path)
        try:
            return Decimal(text)
        except InvalidOperation:
            raise self.error(f"{text!r} is not a decimal", path) from None

    def date(self, choice_path: str) -> date:
        """A DateAndDateTime2Choice at choice_path: its Dt, or the date of its DtTm."""
        if self.has(f"{choice_path}/Dt"):
            path, pattern = f"{choice_path}/Dt", _DATE
        else:
            path, pattern = f"{choice_path}/DtTm", _DATE_TIME
        text = self.text(path)
        match = pattern.fullmatch(text)
        if match is None:
            raise self.error(f"{text!r} is not a date this library can read", path)
        return self.convert(path, match.group(1), date.fromisoformat)
