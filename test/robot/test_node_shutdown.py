"""The detector ends cleanly however it is stopped: Ctrl-C in a terminal running ``ros2 launch`` sends
SIGINT twice (the terminal's and the one launch forwards), launch's escalation sends SIGTERM, and
either may land at any moment of the shutdown. Each run starts the real executable."""

import signal
import time

from node_testing import start_detector

RUNS = 20
# Gaps between the two signals, from "at once" to "in the middle of the clean-up".
SECOND_SIGNAL_DELAYS_S = (0.0, 0.001, 0.005, 0.02, 0.05)


def _stop_sequence(run):
    """The signals of one run and the gap between them: every third run SIGINT then SIGTERM."""
    second = signal.SIGTERM if run % 3 == 2 else signal.SIGINT
    return signal.SIGINT, second, SECOND_SIGNAL_DELAYS_S[run % len(SECOND_SIGNAL_DELAYS_S)]


def test_repeated_stop_signals_end_the_node_with_status_0_and_no_traceback(ros_env, tmp_path):
    started = time.monotonic()
    for run in range(RUNS):
        detector = start_detector(ros_env, tmp_path, {"image_topics": [f"run{run}/image"]})
        first, second, delay_s = _stop_sequence(run)
        detector.process.send_signal(first)
        time.sleep(delay_s)
        detector.process.send_signal(second)
        code = detector.wait(20)
        situation = f"run {run}: {first.name}, {delay_s * 1000:.0f} ms, {second.name}"
        assert code == 0, f"{situation}: exit status {code}\n{detector.output}"
        assert "Traceback" not in detector.output and "KeyboardInterrupt" not in detector.output, \
            f"{situation}:\n{detector.output}"
    assert time.monotonic() - started < 120, "each start and stop takes a second or two"


def test_sigterm_alone_ends_the_node_with_status_0(ros_env, tmp_path):
    detector = start_detector(ros_env, tmp_path, {})
    detector.process.send_signal(signal.SIGTERM)
    assert detector.wait(20) == 0, detector.output
    assert "Traceback" not in detector.output
