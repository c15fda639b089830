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


def segments():
    """Every Fast DDS segment file in /dev/shm."""
    try:
        return [path for path in SHM.iterdir() if SEGMENT_NAME.fullmatch(path.name)]
    except OSError:
        return []


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
    """Delete a segment and its lock file; for its owner, or for one found abandoned."""
    for path in (segment, lock_file(segment)):
        path.unlink(missing_ok=True)


def kill(process):
    """SIGKILL a node process (a subprocess.Popen), wait for it, and remove the segments it leaves
    that no other process maps."""
    owned = owned_segments(process.pid)
    process.kill()
    process.wait()
    return remove_abandoned(owned)


def remove_abandoned(candidates):
    """Remove those of ``candidates`` (segment paths) that no living process maps or holds the lock
    of; returns the ones removed. The checks only read /proc, so a participant creating its segment
    at this moment is not disturbed (fastdds shm clean instead takes the lock to test it)."""
    mapped = _mapped_files()
    locked = _locked_inodes()
    removed = []
    for segment in candidates:
        if str(segment) in mapped:
            continue
        try:
            lock = lock_file(segment).stat()
        except FileNotFoundError:
            lock = None
        if lock is not None and (os.major(lock.st_dev), os.minor(lock.st_dev), lock.st_ino) in locked:
            continue
        remove(segment)
        removed.append(segment)
    return removed


def _mapped_files():
    """Paths of the /dev/shm files that some living process has mapped."""
    mapped = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            with open(maps) as rows:
                mapped.update(row.split(maxsplit=5)[5].strip() for row in rows if f" {SHM}/" in row)
        except OSError:
            continue  # ended meanwhile, or not ours to read
    return mapped


def _locked_inodes():
    """(major, minor, inode) of every file some process holds a lock on (/proc/locks)."""
    locked = set()
    try:
        rows = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return locked
    for row in rows:
        fields = row.split()
        device_inode = next((f for f in fields if f.count(":") == 2), None)
        if device_inode is not None:
            major, minor, inode = device_inode.split(":")
            locked.add((int(major, 16), int(minor, 16), int(inode)))
    return locked
