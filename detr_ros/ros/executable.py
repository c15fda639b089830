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
import threading

import rclpy
from rclpy.exceptions import NameValidationException, ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.logging import get_logger

from detr_ros.errors import DetrRosError
from detr_ros.ros import shared_memory
from detr_ros.ros.leader_follower import LeaderFollowerExecutor
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


def run_node(node_class, executable, summary, parameters, args=None, threads=1):
    """Run ``node_class()`` until it finishes or the process is stopped; returns the exit status.

    executable, summary, parameters (ParameterSpec rows): what ``--help`` prints. threads: how many
    threads run the node's callbacks (LeaderFollowerExecutor); more than one serves a node whose
    long callbacks are in a reentrant callback group while they run.
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
        interrupted = _spin(node, threads)
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


def _spin(node, threads):
    """Run the node's callbacks in ``threads`` threads until it is finished (returns False) or stopped from
    outside (True). Once one thread ends, for whatever reason, the others end too."""
    if not node.context.ok():
        return True  # stopped before spinning: an executor cannot be made on a shut-down context
    executor = LeaderFollowerExecutor(context=node.context)
    executor.add_node(node)
    outcomes = [None] * threads
    ending = threading.Event()
    others = [threading.Thread(target=_spin_in_thread, args=(executor, node, ending, outcomes, index), daemon=True)
              for index in range(1, threads)]
    try:
        for thread in others:
            thread.start()
        _spin_in_thread(executor, node, ending, outcomes, 0)
        for thread in others:
            thread.join()
    finally:
        executor.shutdown()
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            raise outcome
    return any(outcomes)


def _spin_in_thread(executor, node, ending, outcomes, index):
    """One thread's part of _spin: its outcome (True: stopped from outside, False: finished, or the
    exception that ended it) goes to outcomes[index]."""
    try:
        while not getattr(node, "finished", False) and not ending.is_set():
            if not node.context.ok():
                outcomes[index] = True
                return
            executor.spin_once()
        outcomes[index] = False
    except ExternalShutdownException:
        outcomes[index] = True
    except Exception as error:
        # A stop signal shuts the context down from rclpy's signal handler, which can land between
        # the check above and the executor's next wait: that is a stop, not a failure.
        outcomes[index] = error if node.context.ok() else True
    finally:
        ending.set()
        executor.shutdown(timeout_sec=0)  # wakes a thread waiting for work, which then sees the end


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
