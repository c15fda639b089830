"""Files the package installs beside its code (the shipped model, the loopback DDS profile).

They are found where each way of installing puts them: the ament share folder (colcon), the
pip install prefix (setup.py data_files), or the source checkout. Imports nothing of ROS unless
ament_index_python is there, so every layer may use it.
"""

import sys
from pathlib import Path

PACKAGE = "detr_ros"


def package_file_candidates(relative):
    """Where ``relative`` (a path under the package's share folder, e.g. models/x.onnx) may be, in order."""
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(PACKAGE, print_warning=False)) / relative)
    except (ImportError, LookupError, OSError):  # not installed through ament, or AMENT_PREFIX_PATH unset
        pass
    candidates.append(Path(sys.prefix) / "share" / PACKAGE / relative)  # pip's data_files
    candidates.append(Path(__file__).resolve().parents[1] / relative)  # a source checkout
    return candidates


def package_file(relative):
    """The first of package_file_candidates(relative) that exists, or None."""
    return next((path for path in package_file_candidates(relative) if path.is_file()), None)
