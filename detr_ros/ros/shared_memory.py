"""The Fast DDS shared-memory segments of node processes, and removing the ones a process left behind.

Each participant on Fast DDS's shared-memory transport creates a segment /dev/shm/fastdds_<16 hex>
(fastrtps_<16 hex> up to ROS 2 Jazzy), 16 MiB under the loopback profile, and holds a lock on
<segment>_el for as long as it lives. Its clean teardown removes both files. A process that ends
without that teardown (os._exit, SIGKILL, a crash) leaves them in tmpfs, that is in RAM, until the
machine restarts: no later participant removes them. Port files (fastdds_port<n>) are shared by all
participants on a port and reused, so they are left alone.
"""

import os
import re
from pathlib import Path

SHM = Path("/dev/shm")
SEGMENT_NAME = re.compile(r"fast(dds|rtps)_[0-9a-f]{16}")
LOCK_SUFFIX = "_el"


def lock_file(segment):
    return segment.with_name(segment.name + LOCK_SUFFIX)


def owned_segments(pid="self"):
    """The segments the process ``pid`` created: those whose lock file it holds open."""
    found = []
    try:
        descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return found
    for descriptor in descriptors:
        try:
            target = Path(os.readlink(descriptor))
        except OSError:
            continue  # closed meanwhile
        name = target.name.removesuffix(LOCK_SUFFIX)
        if target.parent == SHM and target.name.endswith(LOCK_SUFFIX) and SEGMENT_NAME.fullmatch(name):
            found.append(target.with_name(name))
    return found


def remove(segment):
    """Delete a segment and its lock file."""
    for path in (segment, lock_file(segment)):
        path.unlink(missing_ok=True)
