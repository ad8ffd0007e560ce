"""Command-line overrides as a value: parsed once, with Hydra's own override grammar.

``model=yolov3 +recipe.extra.x=1 ~key data@x=y`` are read by Hydra's parser (quoting, lists,
``+``/``~`` prefixes, ``@package``), never by splitting on ``=``: a value that holds ``=`` or a
quoted list is then one value, and every module asks the same object for a key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import OverrideParseException

from replicate.errors import ConfigError


def _parse(items: Sequence[str]) -> tuple[Override, ...]:
    parser = OverridesParser.create()
    parsed = []
    for item in items:
        try:
            parsed.extend(parser.parse_overrides([item]))
        except OverrideParseException as exc:
            if "=" not in item:
                raise ConfigError(item, "overrides are KEY=VALUE (e.g. model=faster_rcnn)") from None
            lines = [ln.strip() for ln in str(exc).splitlines()
                     if ln.strip() and not ln.startswith(("Error parsing", "See "))]
            reason = lines[0] if lines else "see Hydra's override grammar"
            key, value = item.split("=", 1)
            quote = f"; a value holding '=' or spaces is quoted: {key}='...'" if "=" in value or " " in value else ""
            raise ConfigError(key, f"{value!r} is not a valid override value ({reason}){quote}") from None
    return tuple(parsed)


@dataclass(frozen=True)
class Overrides:
    """An ordered list of overrides; the last one of a key wins, as in Hydra."""

    parsed: tuple[Override, ...] = ()

    @classmethod
    def parse(cls, items: Sequence[str] | "Overrides") -> "Overrides":
        """Parse ``items`` (ConfigError naming a malformed one); an Overrides passes through."""
        return items if isinstance(items, Overrides) else cls(_parse(list(items)))

    def __iter__(self) -> Iterator[str]:
        return (self.text(o) for o in self.parsed)

    def __len__(self) -> int:
        return len(self.parsed)

    def as_list(self) -> list[str]:
        return list(self)

    @staticmethod
    def text(override: Override) -> str:
        """The override as it was typed."""
        return str(override.input_line)

    @staticmethod
    def key(override: Override) -> str:
        """The key an override sets, without its ``+``/``~`` prefix or ``@package``."""
        return str(override.key_or_group)

    def keys(self) -> set[str]:
        return {self.key(o) for o in self.parsed}

    def has(self, key: str) -> bool:
        return key in self.keys()

    def value(self, key: str) -> Optional[str]:
        """The value text of the last override of ``key`` (None when absent or a deletion)."""
        for item in reversed(self.parsed):
            if self.key(item) == key:
                if item.is_delete():
                    return None
                value = item.value()   # a quoted string without its quotes
                if isinstance(value, str):
                    return value
                # a list, a number, a sweep (a,b): the value as typed, after the key Hydra parsed
                return self.text(item)[len(item.get_key_element()) + 1:]
        return None

    def without(self, *keys: str) -> "Overrides":
        """These overrides less every one of ``keys``."""
        return Overrides(tuple(o for o in self.parsed if self.key(o) not in keys))

    def plus(self, *items: str) -> "Overrides":
        """These overrides followed by ``items`` (which then win)."""
        return Overrides(self.parsed + _parse(items))
