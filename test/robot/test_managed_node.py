"""The managed (lifecycle) detector, driven through its lifecycle services over DDS as `ros2 lifecycle
set` and a lifecycle manager do: it serves only while active, and can be activated again."""

import itertools

import cv2
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from detr_ros.ros import messages
from detr_ros.synthetic.video import SceneVideo
from node_testing import SHIPPED_MODEL, NodeProcess, detections_by_stamp, stamp_ns
from ros_testing import spin_until

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


class LifecycleClient:
    """Calls a node's change_state and get_state services."""

    def __init__(self, context, probe, node_name):
        self.context, self.probe = context, probe
        self.change = probe.create_client(ChangeState, f"{node_name}/change_state")
        self.get = probe.create_client(GetState, f"{node_name}/get_state")
        assert spin_until(context, [probe], lambda: self.change.service_is_ready() and self.get.service_is_ready(),
                          20.0), "no lifecycle services"

    def _call(self, client, request):
        future = client.call_async(request)
        assert spin_until(self.context, [self.probe], future.done, 30.0), f"{client.srv_name} timed out"
        return future.result()

    def transition(self, transition_id):
        return self._call(self.change, ChangeState.Request(transition=Transition(id=transition_id))).success

    def state(self):
        return self._call(self.get, GetState.Request()).current_state.id


def test_lifecycle_transitions_load_serve_stop_and_free(ros_env, ros_context, tmp_path):
    node = NodeProcess("detr_ros.ros.managed_detector_node", ros_env, tmp_path,
                       {"model_path": str(SHIPPED_MODEL), "providers": ["cpu"], "qos_reliability": "reliable"})
    probe = Node("lifecycle_probe", context=ros_context)
    found = detections_by_stamp(probe, "detections")
    publisher = probe.create_publisher(Image, "image", RELIABLE)
    rgb = cv2.cvtColor(SceneVideo(320, 240, seed=4).frame(0)[0], cv2.COLOR_BGR2RGB)
    stamps = itertools.count(1)

    def answered(timeout_s=5.0):
        """Publish a frame; whether the node answers it within a few seconds."""
        header = Header(frame_id="cam")
        header.stamp.sec = next(stamps)
        publisher.publish(messages.image_message(header, rgb, "rgb8"))
        return spin_until(ros_context, [probe], lambda: stamp_ns(header) in found, timeout_s)

    def serving():
        return probe.count_subscribers("/image") == 1 and probe.count_publishers("/detections") == 1

    try:
        lifecycle = LifecycleClient(ros_context, probe, "detr_detector")
        assert lifecycle.state() == State.PRIMARY_STATE_UNCONFIGURED
        assert not serving() and "listening to" not in node.output

        assert lifecycle.transition(Transition.TRANSITION_CONFIGURE)
        assert lifecycle.state() == State.PRIMARY_STATE_INACTIVE
        assert "configure: done" in node.output and not serving()

        for cycle in range(2):  # activating again after a deactivate serves again
            assert lifecycle.transition(Transition.TRANSITION_ACTIVATE)
            assert lifecycle.state() == State.PRIMARY_STATE_ACTIVE
            assert spin_until(ros_context, [probe], lambda: serving() and publisher.get_subscription_count(), 10.0)
            assert answered(), f"cycle {cycle}: no detections while active\n{node.output}"

            assert lifecycle.transition(Transition.TRANSITION_DEACTIVATE)
            assert lifecycle.state() == State.PRIMARY_STATE_INACTIVE
            assert spin_until(ros_context, [probe], lambda: probe.count_subscribers("/image") == 0
                              and probe.count_publishers("/detections") == 0, 10.0), "deactivate withdraws all"
            assert not answered(timeout_s=2.0)

        assert lifecycle.transition(Transition.TRANSITION_CLEANUP)
        assert lifecycle.state() == State.PRIMARY_STATE_UNCONFIGURED
        assert lifecycle.transition(Transition.TRANSITION_CONFIGURE)  # loads the model again
        assert lifecycle.transition(Transition.TRANSITION_ACTIVATE)
        assert spin_until(ros_context, [probe], lambda: serving() and publisher.get_subscription_count(), 10.0)
        assert answered()
        assert not lifecycle.transition(Transition.TRANSITION_CONFIGURE), "not a transition from active"
        assert lifecycle.state() == State.PRIMARY_STATE_ACTIVE and answered(), "a refused request changes nothing"
    finally:
        assert node.stop() == 0, node.output
        probe.destroy_node()
    assert "Traceback" not in node.output
