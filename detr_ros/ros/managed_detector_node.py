"""The ``managed_detector`` node: the detector as a ROS 2 managed (lifecycle) node.

Same parameters, topics and work as the ``detector`` node (``DetectorWork``), driven by the
lifecycle transitions instead of starting at once:

  configure   loads the model (the inference session)    unconfigured -> inactive
  activate    subscribes to the cameras and publishes    inactive -> active
  deactivate  unsubscribes and withdraws the outputs     active -> inactive
  cleanup     frees the inference session                inactive -> unconfigured
  shutdown    all of the above that applies              any -> finalized

  ros2 lifecycle set /detr_detector configure
  ros2 lifecycle set /detr_detector activate

Parameters are checked at start; the runtime ones may be changed in any state.
"""

import sys

from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

from detr_ros.errors import DetrRosError
from detr_ros.ros.detector_node import SPINNING_THREADS, SUMMARY, DetectorWork
from detr_ros.ros.detector_parameters import NODE_NAME, PARAMETERS
from detr_ros.ros.executable import run_node


class ManagedDetectorNode(DetectorWork, LifecycleNode):
    """The detector node, loading its model on configure and serving its cameras while active."""

    def __init__(self, **node_options):
        LifecycleNode.__init__(self, NODE_NAME, **node_options)
        self._refuse_unavailable_transitions()
        self.declare_detector_parameters()
        self.get_logger().info("unconfigured; configure loads the model, activate starts serving")

    def _refuse_unavailable_transitions(self):
        """Answer a change_state request for a transition the current state lacks with success false.

        rclpy up to Jazzy lets the state machine's error escape the service callback, which ends the
        node; rclpy's own lifecycle code reaches the service the same way, through this attribute.
        """
        service = self._service_change_state
        serve = service.callback

        def change_state(request, response):
            try:
                return serve(request, response)
            except rclpy_implementation.RCLError:
                self.get_logger().warning(f"transition {request.transition.id} {request.transition.label!r} "
                                          "refused: the current state has no such transition")
                response.success = False
                return response

        service.callback = change_state

    def on_configure(self, state):
        return self._transition("configure", self.load_model)

    def on_activate(self, state):
        return self._transition("activate", self.start)

    def on_deactivate(self, state):
        return self._transition("deactivate", self.stop)

    def on_cleanup(self, state):
        return self._transition("cleanup", self.unload_model)

    def on_shutdown(self, state):
        return self._transition("shutdown", self._shut_down)

    def _shut_down(self):
        self.stop()
        self.unload_model()

    def _transition(self, name, step):
        """Run one step; a DetrRosError (a bad model file, topic name, ...) fails the transition with its reason."""
        try:
            step()
        except DetrRosError as error:
            self.get_logger().error(f"{name} failed: {error}")
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f"{name}: done")
        return TransitionCallbackReturn.SUCCESS

    def close(self, interrupted):
        """Called before the node is destroyed."""
        self.stop()


def main(args=None):
    return run_node(ManagedDetectorNode, "managed_detector", SUMMARY + " A managed (lifecycle) node: "
                    "configure loads the model, activate starts serving.", PARAMETERS, args,
                    threads=SPINNING_THREADS)


if __name__ == "__main__":
    sys.exit(main())
