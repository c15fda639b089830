"""Parameters of the node executables: declared from a table of ParameterSpec, described by ``--help``.

Each node lists its parameters once, as ``ParameterSpec`` rows (detector_parameters); this module
turns a table into declared, checked ROS parameters and into the ``--help`` text an operator
reads before starting the node, and ends the process of a node that refuses to start.
"""

import functools
import os
import sys

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.parameter import Parameter

from detr_ros.errors import ConfigError, DetrRosError
from detr_ros.ros.detector_parameters import STRING_ARRAY


def descriptor(spec):
    """The ParameterDescriptor of one ParameterSpec: description, allowed values, range, read-only."""
    result = ParameterDescriptor(description=f"{spec.description} ({spec.allowed()})", read_only=spec.read_only)
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
        default = Parameter.Type.STRING_ARRAY if spec.default == STRING_ARRAY else spec.default
        try:
            node.declare_parameter(spec.name, default, descriptor(spec))
            value = node.get_parameter(spec.name).value
        except ParameterException as error:
            if not (spec.default == STRING_ARRAY and node.has_parameter(spec.name)):
                # rclpy refuses wrong types and out-of-range numbers itself; keep its detail, add ours.
                raise ConfigError(f"parameter {spec.name}: {error}; expected {spec.allowed()}") from None
            value = None  # declared without a default and not set (Humble returns None instead)
        if value is None and spec.default == STRING_ARRAY:
            # Give it a typed empty list: some rclpy releases' parameter services fail on unset values.
            value = []
            node.set_parameters([Parameter(spec.name, Parameter.Type.STRING_ARRAY, value)])
        problem = spec.problem(value)
        if problem:
            raise ConfigError(f"parameter {spec.name}: {problem}")
        values[spec.name] = list(value) if isinstance(value, (list, tuple)) else value
    return values


def exits_if_start_fails(init):
    """Decorates a Node subclass's ``__init__``: when it raises a DetrRosError (a bad parameter, a
    bad model), the reason is logged and the process ends at once with exit code 2.

    The process leaves without tearing down its DDS participant. Created moments before, the
    participant is still in discovery, and deleting it then can spin forever or crash inside Fast
    DDS (its set_listener waits for a discovery callback in flight, eProsima/Fast-DDS#6513): seen
    here as a start failure that never exited and as one that segfaulted. The operating system
    releases the sockets and memory of an exiting process.
    """

    @functools.wraps(init)
    def start(node, *args, **kwargs):
        try:
            init(node, *args, **kwargs)
        except DetrRosError as error:
            if getattr(node, "handle", None) is None:  # Node.__init__ itself failed: no participant
                raise
            node.get_logger().fatal(str(error))
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)

    return start


def help_requested(argv):
    """True when the executable's own arguments (before any --ros-args) ask for help."""
    own = argv[1:argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    return "-h" in own or "--help" in own


def usage(executable, summary, specs):
    """``--help`` text: how to run the node, what it does, and every parameter with its default."""
    lines = [f"usage: {executable} [--ros-args -p NAME:=VALUE ... | --params-file FILE]", "", summary, "",
             "parameters:"]
    for spec in specs:
        default = "unset" if spec.default == STRING_ARRAY else repr(spec.default)
        change = "" if spec.read_only else "; changeable at runtime"
        lines.append(f"  {spec.name} (default {default}): {spec.description}; {spec.allowed()}{change}")
    return "\n".join(lines)
