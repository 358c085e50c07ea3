"""One declaration per node parameter: the fields of a frozen dataclass, made with `parameter`.

A field carries the parameter's default, its description (units in it) and what it accepts: a numeric range, a
set of strings, and when a new value takes effect. Everything else is derived from it:

- `declare`: the rclpy declarations, each with its ParameterDescriptor (description, FloatingPointRange or
  IntegerRange, read-only), which `ros2 param describe` shows and rclpy enforces;
- `refusal`: the checks rclpy does not do (choices, values that take effect only at the next configure);
- `read` and `values`: the values back as an instance of the dataclass (or of a ROS-free core's configuration),
  or as its fields;
- `render`: the YAML parameter file a package installs. `python -m mm_ros.parameters MODULE:NAME` prints the
  `ParameterFile` NAME of MODULE; each package's tests check that its checked-in file is exactly that.

A ROS-free core (a configuration dataclass of mm_sim or mm_learning) can mark its own fields: this module imports
nothing of ROS until `declare` or `read` runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from rcl_interfaces.msg import ParameterDescriptor  # type: ignore[import-untyped]
    from rclpy.node import Node

Applies = Literal["now", "configure", "start"]
"""When a new value takes effect: "now" (while the node runs), "configure" (a lifecycle node's next configure:
refused while it is configured) or "start" (read-only: only a parameter file or ``-p`` at start sets it)."""
_WHEN: dict[str, str] = {
    "now": "",
    "configure": " [takes effect at the next configure]",
    "start": " [read-only: set at start]",
}
_METADATA_KEY = "mm_ros.parameter"
# The ROS parameter types a declaration may have (rclpy infers the type from the default).
_SCALARS = (bool, int, float, str)


class ParameterError(ValueError):
    """A parameter declaration that cannot be a ROS parameter, or a parameter file that cannot be made."""


@dataclass(frozen=True)
class Spec:
    """What a dataclass field says about its parameter (the field's default is the parameter's).

    Attributes:
        description: what it means, with units.
        low, high: inclusive bounds of a number (the descriptor's range).
        choices: the strings it accepts.
        applies: when a new value takes effect (`Applies`).
        name: the parameter's name where it differs from the field's.
        text: for a field that is not a ROS value (a mapping), its parameter's default as text, and `parse`
            turns the parameter's text into the field's value.
        parse: see `text`.
    """

    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    applies: Applies = "now"
    name: str = ""
    text: str | None = None
    parse: Callable[[str], Any] | None = None


def parameter(
    default: Any = dataclasses.MISSING,
    description: str = "",
    *,
    low: float | None = None,
    high: float | None = None,
    choices: tuple[str, ...] = (),
    applies: Applies = "now",
    name: str = "",
    text: str | None = None,
    parse: Callable[[str], Any] | None = None,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field that is also a node parameter (arguments: `Spec`'s attributes and the field's default)."""
    spec = Spec(description, low, high, choices, applies, name, text, parse)
    return dataclasses.field(default=default, default_factory=default_factory, metadata={_METADATA_KEY: spec})


@dataclass(frozen=True)
class Declaration:
    """One parameter: its full name, the field it comes from, its ROS default and its spec."""

    name: str
    field: str
    default: Any
    spec: Spec

    @property
    def description(self) -> str:
        """The description with when a change takes effect, as the descriptor and the parameter file show it."""
        return self.spec.description + _WHEN[self.spec.applies]


def _field_default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _problem(default: Any, spec: Spec) -> str:
    """Why a declaration cannot be a ROS parameter, or ""."""
    if not spec.description:
        return "has no description"
    if (spec.text is None) != (spec.parse is None):
        return "gives only one of `text` and `parse`; a parameter held as text needs both"
    if isinstance(default, tuple):
        return "" if default and all(isinstance(v, str) for v in default) else "must be a non-empty tuple of str"
    if not isinstance(default, _SCALARS):
        return f"has a default of type {type(default).__name__}; use bool, int, float, str or tuple[str, ...]"
    if spec.choices and default not in spec.choices:
        return f"default {default!r} is not one of its choices {spec.choices}"
    return _range_problem(default, spec)


def _range_problem(default: bool | int | float | str, spec: Spec) -> str:
    """Why a scalar's range cannot be a descriptor's, or ""."""
    if (spec.low is None) != (spec.high is None):
        return "needs both bounds or none"
    if spec.low is not None and spec.high is not None:
        if isinstance(default, bool | str):
            return "is not a number but has a range"
        if isinstance(default, int) and not (float(spec.low).is_integer() and float(spec.high).is_integer()):
            return "is an integer with a fractional bound"
        if not spec.low <= default <= spec.high:
            return f"default {default} is outside its range [{spec.low}, {spec.high}]"
    return ""


def declarations(cls: type, prefix: str = "") -> tuple[Declaration, ...]:
    """The parameters of dataclass `cls` (its fields made with `parameter`), named `prefix` + name.

    Raises:
        ParameterError: naming a field whose declaration cannot be a ROS parameter.
    """
    result = []
    for field in dataclasses.fields(cls):
        spec: Spec | None = field.metadata.get(_METADATA_KEY)
        if spec is None:
            continue
        default = spec.text if spec.text is not None else _field_default(field)
        problem = _problem(default, spec)
        if problem:
            raise ParameterError(f"{cls.__name__}.{field.name} {problem}: fix its `parameter(...)` declaration")
        result.append(Declaration(prefix + (spec.name or field.name), field.name, default, spec))
    return tuple(result)


def defaults(cls: type, prefix: str = "") -> dict[str, Any]:
    """Parameter name -> default (ROS value) of the parameters of `cls`."""
    return {d.name: d.default for d in declarations(cls, prefix)}


def descriptor(declaration: Declaration) -> ParameterDescriptor:
    """The ParameterDescriptor of a declaration: description, range or choices, read-only."""
    from rcl_interfaces.msg import (  # noqa: PLC0415 -- rclpy's messages: the dataclass side stays ROS-free
        FloatingPointRange,
        IntegerRange,
        ParameterDescriptor,
    )

    spec = declaration.spec
    result = ParameterDescriptor(
        name=declaration.name, description=declaration.description, read_only=spec.applies == "start"
    )
    if spec.choices:
        result.additional_constraints = f"one of: {', '.join(spec.choices)}"
    if spec.low is not None and spec.high is not None:
        if isinstance(declaration.default, int):
            result.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=1)]
        else:
            result.floating_point_range = [
                FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high), step=0.0)
            ]
    return result


def _ros_value(default: Any) -> Any:
    return list(default) if isinstance(default, tuple) else default


def declare(node: Node, cls: type, prefix: str = "") -> None:
    """Declare the parameters of `cls` on `node`, each with its descriptor."""
    for declaration in declarations(cls, prefix):
        node.declare_parameter(declaration.name, _ros_value(declaration.default), descriptor(declaration))


def _field_value(declaration: Declaration, value: Any) -> Any:
    """A parameter's value as its field holds it (the declared type; `parse` applied)."""
    if declaration.spec.parse is not None:
        return declaration.spec.parse(str(value))
    if isinstance(declaration.default, tuple):
        return tuple(value)
    return type(declaration.default)(value)


def values(node: Node, cls: type, prefix: str = "") -> dict[str, Any]:
    """Field name -> `node`'s current value of its parameter, for the parameters of `cls`."""
    return {d.field: _field_value(d, node.get_parameter(d.name).value) for d in declarations(cls, prefix)}


def read(node: Node, cls: type, prefix: str = "", **others: Any) -> Any:
    """An instance of `cls` from `node`'s current values of its parameters; `others` fill its other fields."""
    return cls(**values(node, cls, prefix), **others)


def refusal(cls: type, changes: Mapping[str, Any], *, configured: bool, prefix: str = "") -> str:
    """Why `changes` (name -> new value) cannot be set now, or "" (ranges and read-only are rclpy's checks).

    Args:
        cls: the dataclass declaring the parameters; names it does not declare are not judged.
        changes: the parameters being set.
        configured: a lifecycle node is configured: "configure" parameters cannot change now.
        prefix: the prefix of the parameters' names.
    """
    by_name = {d.name: d for d in declarations(cls, prefix)}
    for name, value in changes.items():
        declaration = by_name.get(name)
        if declaration is None:
            continue
        if declaration.spec.choices and value not in declaration.spec.choices:
            return f"{name} {value!r} is not one of {', '.join(declaration.spec.choices)}"
        if declaration.spec.applies == "configure" and configured:
            return f"{name} takes effect at configure: deactivate and clean up the node first, then set it"
    return ""


@dataclass(frozen=True)
class Section:
    """Parameters of one dataclass in a parameter file, named with `prefix`, under a comment (may be empty)."""

    cls: type
    prefix: str = ""
    comment: str = ""


@dataclass(frozen=True)
class ParameterFile:
    """A node's YAML parameter file.

    Attributes:
        source: how to regenerate it, ``MODULE:NAME`` of this object (written into the file's first line).
        node: the node key, e.g. ``/**/driver`` (any namespace).
        header: comment text above it (usage).
        sections: the parameters, in order.
    """

    source: str
    node: str
    header: str
    sections: tuple[Section, ...]


def yaml_value(value: Any) -> str:
    """A ROS parameter value as YAML that ROS's parser and PyYAML read back with the same type."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ParameterError(f"{value} has no YAML form both parsers read: declare a finite default")
        text = repr(value)
        mantissa, _, exponent = text.partition("e")
        if "." not in mantissa:
            mantissa += ".0"  # YAML 1.1 floats need the dot: 1e-05 would be read as a string
        return mantissa + (f"e{exponent}" if exponent else "")  # repr signs the exponent, as YAML 1.1 wants
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    raise ParameterError(f"{value!r} is not a ROS parameter value")


def _comment(text: str, indent: str) -> list[str]:
    return [f"{indent}# {line}".rstrip() for line in text.splitlines()]


def _note(declaration: Declaration) -> str:
    """The comment of a parameter: description, range or choices, when a change takes effect."""
    spec = declaration.spec
    notes = [spec.description]
    if spec.low is not None and spec.high is not None:
        number = type(declaration.default)
        notes.append(f"range [{yaml_value(number(spec.low))}, {yaml_value(number(spec.high))}]")
    if spec.choices:
        notes.append(f"one of: {', '.join(spec.choices)}")
    return "; ".join(notes) + _WHEN[spec.applies]


def render(parameter_file: ParameterFile) -> str:
    """The YAML text of a parameter file: every parameter with its default, description, range and choices."""
    lines = [f"# Generated by `python -m mm_ros.parameters {parameter_file.source}`: edit that declaration, not this."]
    lines += _comment(parameter_file.header, "")
    lines += [f"{parameter_file.node}:", "  ros__parameters:"]
    for section in parameter_file.sections:
        lines += _comment(section.comment, "    ")
        for declaration in declarations(section.cls, section.prefix):
            value = yaml_value(_ros_value(declaration.default))
            lines.append(f"    {declaration.name}: {value}  # {_note(declaration)}")
    return "\n".join(lines) + "\n"


def load_parameter_file(source: str) -> ParameterFile:
    """The `ParameterFile` named by ``MODULE:NAME``.

    Raises:
        ParameterError: the module or the name does not exist, or is not a ParameterFile.
    """
    module_name, _, name = source.partition(":")
    try:
        value = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise ParameterError(f"{source}: {exc}; give MODULE:NAME of a ParameterFile") from exc
    if not isinstance(value, ParameterFile):
        raise ParameterError(f"{source} is a {type(value).__name__}, not a ParameterFile")
    return value


def main(argv: list[str] | None = None) -> int:
    """Print (or write with ``--output``) the parameter file of ``MODULE:NAME``."""
    parser = argparse.ArgumentParser(prog="python -m mm_ros.parameters", description=main.__doc__)
    parser.add_argument("source", help="MODULE:NAME of a ParameterFile, e.g. mm_driver.driver_node:PARAMETER_FILE")
    parser.add_argument("--output", help="write the file here instead of printing it")
    args = parser.parse_args(argv)
    try:
        text = render(load_parameter_file(args.source))
    except ParameterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    # Run as the imported module, not as __main__: the node modules' ParameterFile is mm_ros.parameters' class.
    from mm_ros.parameters import main as module_main

    sys.exit(module_main())
