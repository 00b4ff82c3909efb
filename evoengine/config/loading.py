"""Building a `Config` in layers: the defaults, then a YAML preset (`configs/<name>.yaml` or a
path, which may `extends:` another preset), then `--set key.path=value` overrides. A typo is
an error that names the key's path and the nearest valid key."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from .fields import MISSING, UNKNOWN_KEY, Invalid
from .sections import Config


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent.parent


def find_preset(kind: str, name: str, near: Path | None = None) -> Path:
    """`name` as a path (relative ones also beside the file `near` that names it), or
    `<kind>/<name>.yaml` in the current directory or the repository."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(
            f"a {kind} preset must be named by a preset name or a file path (got {name!r})"
            + (f" in {near}" if near else "")
        )
    direct = Path(name)
    if direct.suffix in (".yaml", ".yml") or "/" in name:
        for path in ([near.parent / direct] if near is not None and not direct.is_absolute() else []) + [direct]:
            try:
                if path.is_file():
                    return path
            except (OSError, ValueError):  # a name too long or with a NUL byte names no file
                pass
        raise ConfigError(f"{kind} file {name} does not exist" + (f" (named in {near})" if near else ""))
    for base in (Path.cwd() / kind, repo_root() / kind):
        path = base / f"{name}.yaml"
        try:
            if path.is_file():
                return path
        except (OSError, ValueError):
            pass
    known = sorted({p.stem for b in (Path.cwd() / kind, repo_root() / kind) if b.is_dir() for p in b.glob("*.yaml")})
    near_name = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f"; did you mean {near_name[0]!r}?" if near_name else ""
    raise ConfigError(f"no {kind} preset named {name!r}{hint} (known presets: {', '.join(known) or 'none'})")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc}); is it really a YAML config?") from exc
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return data


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _layer(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A preset file with its `extends:` chain and `islands: <preset>` resolved."""
    if path.resolve() in seen:
        raise ConfigError(f"{path}: `extends` loops back to itself")
    data = _read_yaml(path)
    parent = data.pop("extends", None)
    base = _layer(find_preset("configs", parent, near=path), (*seen, path.resolve())) if parent is not None else {}
    if isinstance(data.get("islands"), str):
        data["islands"] = _read_yaml(find_preset("islands", data["islands"], near=path))
    return _merge(base, data)


def parse_override(text: str) -> tuple[list[str], Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: write it as key.path=value, e.g. --set budget.candidates=500")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def _apply_override(data: dict[str, Any], path: list[str], value: Any, text: str) -> None:
    if path[0] == "islands" and len(path) == 1 and isinstance(value, str):
        value = _read_yaml(find_preset("islands", value))
    node: Any = data
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        if isinstance(node, list):
            try:
                index = int(part)
                node[index]
            except (ValueError, IndexError):
                where = ".".join(path[:depth])
                raise ConfigError(
                    f"--set {text}: {where} is a list of {len(node)} item(s); {part!r} is not one of "
                    f"its indexes"
                    + (f" (0 to {len(node) - 1})" if node else f"; set the whole list: --set {where}=[...]")
                ) from None
            if last:
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if node.get(part) is None:  # absent, or left empty in a YAML file
                    node[part] = {}
                node = node[part]
        else:
            raise ConfigError(f"--set {text}: {'.'.join(path[:depth])} is not a section")


def explain(exc: Invalid, source: str) -> str:
    lines = []
    for loc, message, value in exc.problems:
        where = ".".join(str(p) for p in loc) or "(top level)"
        if message == UNKNOWN_KEY:
            known = value  # the keys valid there
            near = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.5)
            hint = f"; did you mean {'.'.join(str(p) for p in (*loc[:-1], near[0]))!r}?" if near else ""
            lines.append(f"unknown key {where!r}{hint} (valid here: {', '.join(known)})")
        elif not loc:
            lines.append(message)
        else:
            lines.append(f"{where}: {message}" + ("" if value is MISSING else f" (got {value!r})"))
    return f"invalid config ({source}):\n  " + "\n  ".join(lines)


def load_config(
    preset: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    base: dict[str, Any] | None = None,
    base_source: str = "the saved config",
) -> Config:
    """Build a `Config`: defaults < `base` (e.g. a resumed run's) < preset < overrides.
    `base_source` names where `base` came from in error messages (e.g. a run's config.yaml)."""
    if base is not None and not isinstance(base, dict):
        raise ConfigError(f"{base_source}: expected a mapping of keys at the top level (got {type(base).__name__})")
    data: dict[str, Any] = dict(base or {})
    sources = [base_source] if base is not None else []
    if preset is not None:
        path = find_preset("configs", str(preset))
        data = _merge(data, _layer(path))
        sources.append(str(path))
    elif base is None:
        default = repo_root() / "configs" / "default.yaml"
        if default.is_file():
            data = _merge(data, _layer(default))
            sources.append(str(default))
    for text in overrides:
        path_, value = parse_override(text)
        _apply_override(data, path_, value, text)
        sources.append(f"--set {text}")
    try:
        return Config.build(data)
    except Invalid as exc:
        raise ConfigError(explain(exc, ", ".join(sources) or "defaults")) from None
