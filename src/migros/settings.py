"""How every stage gets its settings: a frozen dataclass built from the stage's config section.

The config is validated against workflow/schemas/config.schema.yaml before any stage runs, and validation fills
in the schema's defaults, so a section arrives complete; the schema is the only place for defaults and limits.
`StageSettings.from_config` only maps the section onto the dataclass: every field must be given and no other key,
nested sections become their field's dataclass, lists become tuples. Light on purpose (no torch), so the report
environment imports it.
"""

import dataclasses
import typing
from typing import ClassVar, Self


class SettingsError(ValueError):
    """A config section whose keys do not match its settings dataclass."""


def frozen(value):
    """A config value with its lists turned into tuples, so that a frozen dataclass holds it unchanged."""
    if isinstance(value, list):
        return tuple(frozen(item) for item in value)
    return value


def settings_from_section(cls: type, section: dict, path: str):
    """An instance of the dataclass `cls` from config `section`, whose keys must be exactly its fields; `path`
    names the section in errors."""
    if not isinstance(section, dict):
        raise SettingsError(f"{path}: expected a mapping of settings, got {section!r}")
    names = [field.name for field in dataclasses.fields(cls)]
    if unknown := sorted(set(section) - set(names)):
        raise SettingsError(f"{path}: unknown key(s) {unknown}; the keys are {names}")
    if missing := [name for name in names if name not in section]:
        raise SettingsError(f"{path}: missing key(s) {missing} (validating the config fills in the schema's defaults)")
    types = typing.get_type_hints(cls)
    return cls(**{
        name: settings_from_section(types[name], section[name], f"{path}.{name}")
        if dataclasses.is_dataclass(types[name]) else frozen(section[name])
        for name in names
    })


class StageSettings:
    """Base of the stages' frozen settings dataclasses; `SECTION` is the config path that errors name."""

    SECTION: ClassVar[str]

    @classmethod
    def from_config(cls, section: dict) -> Self:
        """The settings of the stage from its config section as validated (defaults filled in) by the schema."""
        return settings_from_section(cls, section, cls.SECTION)


class MethodSettings(StageSettings):
    """Settings of a kind of `methods` entry whose keys, other than `kind`, are exactly its fields."""

    @classmethod
    def from_method(cls, entry: dict, name: str) -> Self:
        """The settings of method `name` from its validated config entry (`kind` dropped)."""
        section = {key: value for key, value in entry.items() if key != "kind"}
        return settings_from_section(cls, section, f"methods.{name}")
