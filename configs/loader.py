"""Load a YAML config, apply `key.sub=value` overrides, validate with the schema.

Errors are turned into one `ConfigError` that lists every bad field with its value and
what is allowed, so a user fixes them all in one go. YAML is read by `ConfigLoader`: a
duplicate key is an error (PyYAML keeps the last value silently) and `1e-3` is a number
(PyYAML's YAML 1.1 resolver reads an exponent without a dot as a string).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import BaseModel, ValidationError

from safecritic.configs.errors import ConfigError
from safecritic.configs.schema import Config

PRESETS_DIR = Path(__file__).resolve().parent


def preset_path(name: str) -> Path:
    """Path of a packaged preset (a YAML file in configs/, by its stem)."""
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))
        raise ConfigError(f"no packaged preset {name!r}; known presets: {', '.join(known)}")
    return path


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names the same key twice (YAML forbids it; PyYAML would keep the last value)."""

    def __init__(self, key: Any, line: int, first_line: int) -> None:
        super().__init__(f"line {line}: key {key!r} appears twice (first on line {first_line}); "
                         "the later value would silently replace the earlier one: keep one")


class ConfigLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and reads `1e-3` / `2E+5` as floats, as YAML 1.2 does."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: explicit keys may override merged ones
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise DuplicateKeyError(key, line, seen[key])
            seen[key] = line
        return super().construct_mapping(node, deep)


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """`text` parsed by ConfigLoader (raises yaml.YAMLError, DuplicateKeyError included)."""
    return yaml.load(text, Loader=ConfigLoader)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`data.episodes=50` -> (['data', 'episodes'], 50); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key.sub=value (e.g. -o data.episodes=50)")
    try:
        value = parse_yaml(raw) if raw.strip() else ""
    except DuplicateKeyError as exc:
        raise ConfigError(f"override {text!r}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc.__class__.__name__})") from None
    return [part.strip() for part in key.split(".")], value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Set each dotted key in a nested dict (creating sections as needed)."""
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is a value, not a section")
            node = child
        node[path[-1]] = value
    return data


def _field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """Allowed keys of the section at `loc` (for 'unknown key' messages)."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current = field.annotation
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem: field, value, what is allowed."""
    lines = [f"invalid config ({source}):"]
    for err in exc.errors():
        loc = tuple(err["loc"])
        field = ".".join(str(p) for p in loc) or "<top level>"
        if err["type"] == "extra_forbidden":
            allowed = _field_names(Config, loc[:-1])
            hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
            lines.append(f"  {field}: unknown key{hint}")
            continue
        if err["type"] == "missing":
            lines.append(f"  {field}: missing (required)")
            continue
        msg = err["msg"].removeprefix("Value error, ")
        if loc:
            lines.append(f"  {field} = {err.get('input')!r}: {msg}")
        else:
            lines.append(f"  {msg}")
    return "\n".join(lines)


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> Config:
    """Read `path`, apply overrides, validate. (Which preset runs when none is named is the CLI's
    choice, safecritic.DEFAULT_PRESET: this layer knows no task.)"""
    path = Path(path)
    presets = f"packaged presets are in {PRESETS_DIR} ({', '.join(sorted(p.name for p in PRESETS_DIR.glob('*.yaml')))})"
    if path.is_dir():
        raise ConfigError(f"config {str(path)!r} is a folder, not a YAML file; {presets}")
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found; {presets}")
    try:
        data = parse_yaml(path.read_bytes().decode("utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file (byte {exc.start} is not UTF-8); a config is UTF-8 YAML") from None
    except DuplicateKeyError as exc:
        raise ConfigError(f"{path}, {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (env, data, run, ...)")
    overrides = list(overrides)
    return config_from_data(data, overrides, str(path) + (f" with overrides {overrides}" if overrides else ""))


def config_from_data(data: dict[str, Any], overrides: Iterable[str], source: str) -> Config:
    """A config from already-parsed sections (a file, a manifest, a run's config) with `key.sub=value`
    overrides applied, validated; a ConfigError naming `source`, the field and the fix otherwise."""
    try:
        return Config.model_validate(apply_overrides(data, overrides))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def dump_config(config: Config) -> str:
    """The resolved config as YAML (what a run directory keeps)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
