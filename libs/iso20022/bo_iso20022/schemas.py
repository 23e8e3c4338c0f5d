"""The three sese XSDs (loaded once each), telling a message's type from its namespace, and
schema validation with one error type for everything a received message can get wrong."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any
from xml.etree.ElementTree import Element

import xmlschema

SESE_023 = "sese.023.001.11"
SESE_024 = "sese.024.001.12"
SESE_025 = "sese.025.001.11"
MESSAGE_TYPES = (SESE_023, SESE_024, SESE_025)

_NAMESPACE_PREFIX = "urn:iso:std:iso:20022:tech:xsd:"


def namespace_of(message_type: str) -> str:
    return _NAMESPACE_PREFIX + message_type


_MESSAGE_TYPE_OF_NAMESPACE = {namespace_of(name): name for name in MESSAGE_TYPES}


class InvalidMessage(ValueError):
    """A received message that is not a valid sese.023/024/025 this library can read: not
    XML, an unknown namespace, a schema error, or a value it cannot take (a bad check digit,
    an unsupported choice). The text names the message type, the element path and why, which
    is what a dead letter should say."""

    def __init__(self, reason: str, *, message_type: str | None = None, path: str = "/") -> None:
        self.reason = reason
        self.message_type = message_type
        self.path = path
        super().__init__(f"{message_type or 'ISO 20022 message'}: {path}: {reason}")


@functools.cache
def schema(message_type: str) -> xmlschema.XMLSchema:
    """The XSD of message_type, read from this package once per process."""
    if message_type not in MESSAGE_TYPES:
        raise ValueError(f"no schema for {message_type!r}; known: {', '.join(MESSAGE_TYPES)}")
    source = resources.files("bo_iso20022.xsd").joinpath(f"{message_type}.xsd").read_bytes()
    return xmlschema.XMLSchema(source)


@functools.cache
def enumeration(message_type: str, type_name: str) -> frozenset[str]:
    """The codes an XSD code type lists (e.g. the pending reasons), read from the schema so
    that the list is never copied by hand."""
    codes: Any = getattr(schema(message_type).types[type_name], "enumeration", None)
    if not codes:
        raise ValueError(f"{type_name} of {message_type} is not a code list")
    return frozenset(str(code) for code in codes)


def first_schema_error(message_type: str, root: Element) -> InvalidMessage | None:
    # Paths and tags in the message's own namespace read better without it.
    qualifier = "{" + namespace_of(message_type) + "}"
    for error in schema(message_type).iter_errors(root):
        reason = (error.reason or error.message).replace(qualifier, "")
        path = (error.path or "/").replace(qualifier, "")
        return InvalidMessage(reason, message_type=message_type, path=path)
    return None


def load(message: bytes, *, expected: str | None = None) -> tuple[str, Element]:
    """Parse message (entities and DTDs refused, nothing fetched), tell its type from the
    namespace of its Document element, validate it against that XSD; return the type and
    the root. Raises InvalidMessage."""
    if not isinstance(message, bytes | bytearray):
        raise InvalidMessage(f"a message is bytes, not {type(message).__name__}")
    try:
        resource = xmlschema.XMLResource(bytes(message), defuse="always", allow="none")
    except (xmlschema.XMLResourceError, SyntaxError) as error:
        raise InvalidMessage(f"not well-formed XML: {error}", message_type=expected) from None
    root = resource.root
    if not isinstance(root, Element):
        raise InvalidMessage("not an ElementTree document", message_type=expected)
    if root.tag.startswith("{"):
        namespace, _, local_name = root.tag[1:].partition("}")
    else:
        namespace, local_name = "", root.tag
    message_type = _MESSAGE_TYPE_OF_NAMESPACE.get(namespace)
    if message_type is None or local_name != "Document":
        known = ", ".join(namespace_of(name) for name in MESSAGE_TYPES)
        raise InvalidMessage(
            f"root element {root.tag!r} is not a Document in a known namespace ({known})",
            message_type=expected,
        )
    if expected is not None and message_type != expected:
        raise InvalidMessage(
            f"expected a {expected} message, got a {message_type}", message_type=expected
        )
    schema_error = first_schema_error(message_type, root)
    if schema_error is not None:
        raise schema_error
    return message_type, root


def validate(message: bytes) -> None:
    """Raise InvalidMessage unless message is a schema-valid sese.023, sese.024 or sese.025
    (told apart by namespace)."""
    load(message)
