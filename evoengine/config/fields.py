"""Typed config sections without a validation library: a class lists its keys with their
types, defaults, bounds and descriptions, and building one checks every key and names each
wrong one. Checks are strict, as a config should be: YAML's `yes` is a boolean and never the
number 1, a number is not a boolean, a string is not a number.

Importing this costs only `typing`: a run's start-up waits on the config (benchmarks/README.md,
engine overhead), and a general validation library cost it ~0.1 s (benchmarks/README.md)."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, Union

MISSING: Any = object()
UNKNOWN_KEY = "unknown key"  # the message of a key the section does not have
_BOUNDS = {
    "ge": (lambda v, b: v >= b, "greater than or equal to"),
    "gt": (lambda v, b: v > b, "greater than"),
    "le": (lambda v, b: v <= b, "less than or equal to"),
    "lt": (lambda v, b: v < b, "less than"),
}


class Spec:
    """One key: its default (or a factory for one), bounds and description; the type comes
    from the class's annotation."""

    __slots__ = ("default", "factory", "bounds", "description", "type")

    def __init__(self, default: Any = MISSING, *, default_factory: Any = None, description: str = "", **bounds: Any):
        unknown = set(bounds) - set(_BOUNDS)
        if unknown:
            raise TypeError(f"unknown bound(s) {sorted(unknown)}; known: {sorted(_BOUNDS)}")
        self.default, self.factory, self.bounds, self.description = default, default_factory, bounds, description
        self.type: Any = None

    @property
    def required(self) -> bool:
        return self.default is MISSING and self.factory is None

    def make_default(self) -> Any:
        return self.factory() if self.factory is not None else self.default


def Field(default: Any = MISSING, **options: Any) -> Any:  # noqa: N802 - reads as a declaration
    """A key's default, bounds (`ge`, `gt`, `le`, `lt`) and description."""
    return Spec(default, **options)


class Invalid(ValueError):
    """Every problem found while building a section: (path, message, the value given; for an
    unknown key, the keys valid there)."""

    def __init__(self, problems: list[tuple[tuple[Any, ...], str, Any]]):
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(map(str, loc)) or '(top level)'}: {msg}" for loc, msg, _ in problems))


class Section:
    """A config section: keyword arguments in, every key checked, read-only afterwards."""

    _specs: dict[str, Spec] | None = None

    @classmethod
    def fields(cls) -> dict[str, Spec]:
        """The section's keys in declaration order, their types resolved on first use."""
        if cls.__dict__.get("_specs") is None:
            specs = {}
            for name, hint in typing.get_type_hints(cls).items():
                if name.startswith("_"):
                    continue
                if name in Section.__dict__:
                    raise TypeError(f"{cls.__name__}.{name}: a key cannot share a name with a Section method")
                value = getattr(cls, name, MISSING)
                specs[name] = value if isinstance(value, Spec) else Spec(value)
                specs[name].type = hint
            cls._specs = specs
        return cls._specs  # type: ignore[return-value]

    def __init__(self, **values: Any):
        self.__dict__.update(self.build(values).__dict__)

    @classmethod
    def build(cls, values: dict[Any, Any]) -> Any:
        """A section from a mapping whose keys may be anything a YAML file holds; `Invalid` lists
        every problem."""
        problems: list[tuple[tuple[Any, ...], str, Any]] = []
        section = cls._checked(values, (), problems)
        if problems:
            raise Invalid(problems)
        return section

    @classmethod
    def _checked(cls, values: dict[Any, Any], loc: tuple[Any, ...], problems: list) -> Any:
        """A section built from `values`, or None with what is wrong added to `problems`."""
        specs, before = cls.fields(), len(problems)
        problems += [((*loc, key), UNKNOWN_KEY, tuple(specs)) for key in values if key not in specs]
        built = {}
        for name, spec in specs.items():
            if name in values:
                built[name] = _convert(values[name], spec.type, (*loc, name), problems, spec.bounds)
            elif spec.required:
                problems.append(((*loc, name), "a required key (it has no default)", MISSING))
            else:
                built[name] = spec.make_default()
        if len(problems) > before:
            return None
        section = object.__new__(cls)
        section.__dict__.update(built)
        try:
            section.check()
        except ValueError as exc:
            problems.append((loc, str(exc), MISSING))
            return None
        return section

    def check(self) -> None:
        """Rules across keys; raise ValueError naming the key."""

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"config sections are read-only: use .replace({name}=...) for a changed copy")

    def replace(self, **changes: Any) -> Any:
        """A copy with `changes`, checked as a new section is."""
        return type(self)(**{**self.__dict__, **changes})

    def dump(self) -> dict[str, Any]:
        """Plain data (dicts, lists, scalars), as YAML or JSON would hold it."""
        return {name: _dump(self.__dict__[name]) for name in self.fields()}

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.__dict__ == self.__dict__

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"


def _dump(value: Any) -> Any:
    if isinstance(value, Section):
        return value.dump()
    if isinstance(value, list):
        return [_dump(v) for v in value]
    return value


def _expected(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        names = [repr(a) for a in typing.get_args(tp)]
        return "Input should be " + (", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0])
    if isinstance(tp, type) and issubclass(tp, Section):
        return f"Input should be a mapping of {tp.__name__}'s keys"
    words = {bool: "a valid boolean", int: "a valid integer", float: "a valid number", str: "a valid string"}
    return f"Input should be {words.get(tp, 'a valid list' if typing.get_origin(tp) is list else str(tp))}"


def _convert(value: Any, tp: Any, loc: tuple[Any, ...], problems: list, bounds: dict[str, Any]) -> Any:
    """`value` as type `tp` within `bounds`; if it is not, a problem added at `loc` (and `value` back)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):  # the sections' unions are all `X | None`
        if value is None:
            return None
        (tp,) = [arm for arm in typing.get_args(tp) if arm is not type(None)]
        origin = typing.get_origin(tp)
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in typing.get_args(tp)):
            return value
    elif origin is list:
        if isinstance(value, list):
            (inner,) = typing.get_args(tp)
            return [_convert(v, inner, (*loc, i), problems, {}) for i, v in enumerate(value)]
    elif isinstance(tp, type) and issubclass(tp, Section):
        if isinstance(value, tp):
            return value
        if isinstance(value, dict):
            return tp._checked(value, loc, problems)
    elif tp is Any or (tp is bool and type(value) is bool) or (tp is str and isinstance(value, str)):
        return value
    elif tp in (int, float) and isinstance(value, tp if tp is int else (int, float)) and not isinstance(value, bool):
        try:
            number = tp(value)
        except OverflowError:
            problems.append((loc, "Input should be a finite number", value))
            return value
        for kind, bound in bounds.items():
            holds, words = _BOUNDS[kind]
            if not holds(number, bound):
                problems.append((loc, f"Input should be {words} {bound}", value))
                return value
        return number
    problems.append((loc, _expected(tp), value))
    return value
