"""How every node executable runs: ``--help``, start-up, spinning, and how the process ends.

One policy for all of them, in ``run_node``:
- Ctrl-C, SIGTERM or a shutdown from outside end the process with exit status 0, without a traceback,
  also when the signal comes twice (a terminal and ``ros2 launch`` both send SIGINT on Ctrl-C);
- a DetrRosError (a bad parameter or model file, a run that cannot go on) or a parameter or topic
  name that rclpy refuses is logged as one FATAL line saying what was found and what was expected,
  and ends the process with exit status 2.
"""

import ctypes
import os
import signal
import sys

import rclpy
from rclpy.exceptions import NameValidationException, ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.logging import get_logger

from detr_ros.errors import DetrRosError
from detr_ros.ros import shared_memory
from detr_ros.ros.parameters import STRING_ARRAY

EXIT_OK = 0
EXIT_INVALID = 2
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
START_FAILURES = (DetrRosError, ParameterException, NameValidationException)


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


def run_node(node_class, executable, summary, parameters, args=None):
    """Run ``node_class()`` until it finishes or the process is stopped; returns the exit status.

    executable, summary, parameters (ParameterSpec rows): what ``--help`` prints.
    The node may have a ``finished`` attribute (spinning ends once it is true; without it the node
    runs until stopped) and a ``close(interrupted)`` method, called before the node is destroyed
    to stop its threads or write what it gathered; ``interrupted``: it was stopped from outside.
    """
    if help_requested(sys.argv if args is None else args):
        print(usage(executable, summary, parameters))
        return EXIT_OK
    _stop_signals_raise_nothing()
    rclpy.init(args=args)
    node = None
    try:
        try:
            node = node_class()
        except START_FAILURES as error:
            _exit_at_once(executable, error)
        except Exception:
            if rclpy.ok():
                raise
            return EXIT_OK  # stopped while starting: creating ROS entities fails once the context is shut down
        interrupted = _spin(node)
        if hasattr(node, "close"):
            node.close(interrupted)
    except ExternalShutdownException:
        pass  # stopped while closing
    except DetrRosError as error:
        node.get_logger().fatal(str(error))
        return EXIT_INVALID
    finally:
        _ignore_stop_signals()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return EXIT_OK


def _on_stop_signal(signum, frame):
    """Nothing more to do: rclpy's own handler, which runs first, has shut the context down."""


def _stop_signals_raise_nothing():
    """Make SIGINT and SIGTERM stop the node without an exception, however often they come.

    rclpy's signal handler shuts the context down (which ends spinning) and then calls the handler
    that was installed before it. Python's default one raises KeyboardInterrupt wherever the main
    thread happens to be, so a second Ctrl-C (a terminal and ``ros2 launch`` each send one) lands in
    the clean-up. Installed before rclpy.init, so that rclpy calls it, this one does nothing.
    """
    for signum in STOP_SIGNALS:
        signal.signal(signum, _on_stop_signal)


def _ignore_stop_signals():
    """From here on the process only ends: later SIGINT and SIGTERM are ignored.

    While the interpreter finalises, Python gives signals with a Python handler their default
    action back, and a late one would kill the process with status -2; an ignored signal stays
    ignored. Python refuses ("ignored due to race condition") a signal that arrived for a Python
    handler but finds SIG_IGN when it runs, so the kernel ignores them first, the ones already
    arrived run their (empty) handler, and only then Python's table says SIG_IGN too.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.signal.restype = ctypes.c_void_p
    libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
    for signum in STOP_SIGNALS:
        libc.signal(signum, ctypes.c_void_p(int(signal.SIG_IGN)))
    _on_stop_signal(None, None)  # a Python call: the interpreter runs the handlers of arrived signals
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def _spin(node):
    """Run the node's callbacks until it is finished (False) or stopped from outside (True)."""
    if not node.context.ok():
        return True  # stopped before spinning: an executor cannot be made on a shut-down context
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        while not getattr(node, "finished", False):
            if not node.context.ok():
                return True
            executor.spin_once()
        return False
    except ExternalShutdownException:
        return True
    except Exception:
        # A stop signal shuts the context down from rclpy's signal handler, which can land between
        # the check above and the executor's next wait: that is a stop, not a failure.
        if node.context.ok():
            raise
        return True
    finally:
        executor.shutdown()


def _exit_at_once(executable, error):
    """Log why the node could not start and end the process with EXIT_INVALID, at once.

    The process leaves without tearing down its DDS participant. Created moments before, the
    participant is still in discovery, and deleting it then can spin forever or crash inside Fast
    DDS (its set_listener waits for a discovery callback in flight, eProsima/Fast-DDS#6513). The
    operating system releases the sockets and memory of an exiting process, but not the shared-memory
    segment files the participant made: those the process removes itself, as the teardown would.
    """
    get_logger(executable).fatal(str(error))
    for segment in shared_memory.owned_segments():
        shared_memory.remove(segment)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_INVALID)
