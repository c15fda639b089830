"""Node parameters from a table: each node lists its parameters once, as ``ParameterSpec`` rows.

A row gives a parameter's default (which decides its ROS type), description, limits and whether
it may change at runtime; ``declare_parameters`` turns a table into declared, checked ROS
parameters. The rows themselves need no ROS context, so tests and the ``--help`` text read them
directly.

Numbers and lists are declared with dynamic typing and their types checked here: ROS users write
``score_threshold:=1`` or ``ros2 param set ... score_threshold 1`` for a float, and
``ros2 param set ... classes "[]"`` sends an empty list as a bool array; rclpy's static types refuse
both. Every other parameter keeps rclpy's static type.
"""

import difflib
from dataclasses import dataclass

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.parameter import Parameter

from detr_ros.errors import ConfigError

STRING_ARRAY = "string_array"  # marks a list parameter declared without a default value


@dataclass(frozen=True)
class ParameterSpec:
    """One parameter: its default decides the ROS type (STRING_ARRAY: a list that starts unset).

    low/high: inclusive range of a number; choices: allowed strings (for a list, of each item);
    per_camera: a list whose entries go with image_topics' by position, so a blank entry (a camera
    without) is kept rather than dropped.
    """

    name: str
    default: object
    description: str
    read_only: bool = True
    low: object = None
    high: object = None
    choices: tuple = ()
    per_camera: bool = False

    def allowed(self):
        """The allowed values in words, for error messages and the parameter descriptor."""
        if self.choices:
            items = ", ".join(choice or '""' for choice in self.choices)
            return f"a list of {items}" if isinstance(self.default, list) else f"one of {items}"
        if self.low is not None:
            kind = "an integer" if isinstance(self.default, int) else "a number"
            return f"{kind} in [{self.low}, {self.high}]"
        if self.default == STRING_ARRAY or isinstance(self.default, list):
            return "a list of strings"
        return {bool: "true or false", str: "a string"}[type(self.default)]

    @property
    def is_list(self):
        return self.default == STRING_ARRAY or isinstance(self.default, list)

    @property
    def dynamically_typed(self):
        """Floats (which take integers too) and lists (which take any empty array) are typed here, not by rclpy."""
        return self.is_list or isinstance(self.default, float)

    def _wrong_type(self, value):
        if value is None:
            return self.default != STRING_ARRAY  # only a list that starts unset may be unset
        if self.is_list:
            # Blank entries count as absent: ``['']`` is how a shell clears a list.
            return not (isinstance(value, (list, tuple)) or hasattr(value, "typecode")) or (
                len(value) and not all(isinstance(v, str) for v in value))
        if isinstance(self.default, float):
            return isinstance(value, bool) or not isinstance(value, (int, float))
        if isinstance(self.default, int) and not isinstance(self.default, bool):
            return isinstance(value, bool) or not isinstance(value, int)
        return not isinstance(value, type(self.default))

    def normalized(self, value):
        """The value as the node uses it: a float for a float parameter, a list without blank entries."""
        if self.is_list:
            return [v for v in value or () if self.per_camera or v.strip()]
        if isinstance(self.default, float):
            return float(value)
        return value

    def problem(self, value):
        """Why ``value`` is not acceptable (None when it is)."""
        if self._wrong_type(value):
            return f"got {value!r}, expected {self.allowed()}"
        if self.is_list:
            value = self.normalized(value)
        if self.choices:
            values = value if isinstance(value, (list, tuple)) else [value]
            wrong = [v for v in values if v not in self.choices]
            if wrong or (isinstance(self.default, list) and not values):
                return f"got {value!r}, expected {self.allowed()}"
        if self.low is not None and not self.low <= value <= self.high:
            return f"got {value!r}, expected {self.allowed()}"
        return None


def descriptor(spec):
    """The ParameterDescriptor of one ParameterSpec: description, allowed values, range, read-only."""
    result = ParameterDescriptor(description=f"{spec.description} ({spec.allowed()})", read_only=spec.read_only,
                                 dynamic_typing=spec.dynamically_typed)
    if spec.low is not None and isinstance(spec.default, float):
        result.floating_point_range = [FloatingPointRange(from_value=spec.low, to_value=spec.high)]
    elif spec.low is not None:
        result.integer_range = [IntegerRange(from_value=spec.low, to_value=spec.high)]
    return result


def declare_parameters(node, specs):
    """Declare every parameter of ``specs`` on ``node`` and check the start values.

    Returns name -> value (lists as lists). Raises ConfigError naming the first bad parameter
    and what it allows.
    """
    values = {}
    for spec in specs:
        default = None if spec.default == STRING_ARRAY else spec.default
        try:
            node.declare_parameter(spec.name, default, descriptor(spec))
            value = node.get_parameter(spec.name).value
        except ParameterException as error:
            if not (spec.default == STRING_ARRAY and node.has_parameter(spec.name)):
                # rclpy refuses wrong types and out-of-range numbers itself, in words that differ between
                # ROS 2 releases; keep its detail, and add what the parameter allows.
                raise ConfigError(f"parameter {spec.name}: {error}; expected {spec.allowed()}") from None
            value = None  # declared without a default and not set (Humble returns None instead)
        if value is None and spec.default == STRING_ARRAY:
            # Give it a typed empty list: some rclpy releases' parameter services fail on unset values.
            value = []
            node.set_parameters([Parameter(spec.name, Parameter.Type.STRING_ARRAY, value)])
        problem = spec.problem(value)
        if problem:
            raise ConfigError(f"parameter {spec.name}: {problem}")
        values[spec.name] = spec.normalized(value)
    return values


def unknown_parameters(given, known):
    """One warning for each name in ``given`` that no parameter in ``known`` has, with the nearest known name.

    ROS's own ``qos_overrides.*`` parameters are not the node's to judge."""
    known = list(known)
    warnings = []
    for name in sorted(set(given) - set(known)):
        if name.startswith("qos_overrides."):
            continue
        nearest = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {nearest[0]}?" if nearest else ""
        warnings.append(f"parameter {name} is not a parameter of this node and is ignored{hint}")
    return warnings


def warn_about_unknown_parameters(node):
    """Log a warning for each parameter given at start (params file, -p) that the node has not declared."""
    # rclpy keeps the parameters given at start in this attribute (Humble to Kilted) and offers no
    # public way to read them; undeclared ones would otherwise be dropped without a word.
    given = getattr(node, "_parameter_overrides", {})
    for warning in unknown_parameters(given, node.list_parameters([], 0).names):
        node.get_logger().warning(warning)
