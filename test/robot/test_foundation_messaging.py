"""vision_msgs travel over real DDS between real rclpy nodes."""

from geometry_msgs.msg import Point, PoseWithCovariance, Quaternion
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from vision_msgs.msg import (
    Detection2D,
    Detection2DArray,
    LabelInfo,
    ObjectHypothesisWithPose,
    VisionClass,
)

from ros_testing import spin_until


def _detections_with_every_field_set():
    message = Detection2DArray()
    message.header.stamp.sec = 1_700_000_123
    message.header.stamp.nanosec = 456_789
    message.header.frame_id = "front_camera_optical"
    for index in range(3):
        detection = Detection2D()
        detection.header = message.header
        detection.id = f"track-{index}"
        detection.bbox.center.position.x = 100.5 + index
        detection.bbox.center.position.y = 50.25 * (index + 1)
        detection.bbox.center.theta = 0.1 * index
        detection.bbox.size_x = 20.0 + index
        detection.bbox.size_y = 30.0 + 2 * index
        for rank in range(2):
            hypothesis = ObjectHypothesisWithPose()
            hypothesis.hypothesis.class_id = f"class_{index}_{rank}"
            hypothesis.hypothesis.score = 0.9 - 0.1 * rank
            hypothesis.pose = PoseWithCovariance()
            hypothesis.pose.pose.position = Point(x=1.0 * index, y=2.0, z=3.0 + rank)
            hypothesis.pose.pose.orientation = Quaternion(x=0.0, y=0.0, z=0.0, w=1.0)
            hypothesis.pose.covariance = [float(i + index) for i in range(36)]
            detection.results.append(hypothesis)
        message.detections.append(detection)
    return message


def test_detection2darray_arrives_field_for_field(ros_context):
    sent = _detections_with_every_field_set()
    received = []
    publisher_node = Node("test_detections_publisher", context=ros_context)
    subscriber_node = Node("test_detections_subscriber", context=ros_context)
    try:
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        subscriber_node.create_subscription(Detection2DArray, "detections", received.append, qos)
        publisher = publisher_node.create_publisher(Detection2DArray, "detections", qos)
        assert spin_until(ros_context, [publisher_node, subscriber_node],
                          lambda: publisher.get_subscription_count() > 0, 10.0)
        publisher.publish(sent)
        assert spin_until(ros_context, [publisher_node, subscriber_node], lambda: received, 10.0)
    finally:
        publisher_node.destroy_node()
        subscriber_node.destroy_node()

    # Messages compare field by field, nested messages and arrays included.
    assert received[0] == sent
    assert len(received[0].detections) == 3
    assert received[0].detections[2].results[1].pose.covariance[35] == 37.0


def test_label_info_reaches_a_subscriber_that_joins_later(ros_context):
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    # 0.375 is exact in float32, so equality is a fair test of the transport.
    label_info = LabelInfo(threshold=0.375)
    label_info.class_map = [VisionClass(class_id=i, class_name=name)
                            for i, name in enumerate(["circle", "square", "triangle"])]
    publisher_node = Node("test_label_info_publisher", context=ros_context)
    late_node = None
    try:
        publisher_node.create_publisher(LabelInfo, "label_info", latched).publish(label_info)
        # Only now does the subscriber exist: it must still get the message.
        late_node = Node("test_label_info_late_subscriber", context=ros_context)
        received = []
        late_node.create_subscription(LabelInfo, "label_info", received.append, latched)
        assert spin_until(ros_context, [publisher_node, late_node], lambda: received, 10.0)
    finally:
        publisher_node.destroy_node()
        if late_node is not None:
            late_node.destroy_node()
    assert received[0] == label_info
