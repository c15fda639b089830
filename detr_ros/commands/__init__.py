"""The command lines of the ``detr-ros`` verbs, one module a verb.

Each module has ``add_arguments(parser)`` and ``run(args) -> exit status``: it turns the parsed
arguments into a call of the library function that does the work (``synthesize``, ``train``,
``evaluate``, ``convert``, ``export``, ...), which Python code can call without argparse.
``detr_ros.cli`` imports a verb's module only when that verb runs.
"""
