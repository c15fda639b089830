"""Detector: an ONNX RT-DETR model behind one call, image in, Detections out.

Loading picks the first available execution provider of an ordered preference, recognises the
file's format (detr_ros.runtime.formats) and reads its metadata (or falls back for foreign files). The calls themselves
(pre-processing, selection) are the DetectionPipeline's; the Detector runs the onnxruntime
session, which is safe to run from several threads.
"""

import hashlib
import logging
import os
import platform
import threading
from pathlib import Path

import onnxruntime as ort

from detr_ros.errors import ConfigError, ModelFileError
from detr_ros.runtime import formats
from detr_ros.runtime.cpu import int8_weights_problem
from detr_ros.runtime.detections import DEFAULT_DUPLICATE_IOU, DEFAULT_SCORE_THRESHOLD
from detr_ros.runtime.labels import names_for_unnamed_graph
from detr_ros.runtime.metadata import PRECISION_FP16, QUANTIZATION_INT8_QDQ, parse_metadata
from detr_ros.runtime.model_file import check_model_file, declared_precision, file_digest
from detr_ros.runtime.pipeline import DetectionPipeline, check_selection
from detr_ros.runtime.providers import (
    SHORT_NAMES,
    TensorRTOptions,
    default_cache_dir,
    gpu_identity,
    resolve_providers,
    tensorrt_provider_options,
    tensorrt_version,
)

LOG = logging.getLogger("detr_ros.runtime")


def cpu_identity():
    """Architecture plus a hash of the CPU model and flags: optimised graphs use CPU-specific kernels."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = [platform.processor()]
    details = sorted({line for line in lines if line.startswith(("model name", "flags", "Features", "CPU part"))})
    return f"{platform.machine()}-{hashlib.sha256(chr(10).join(details).encode()).hexdigest()[:8]}"


# How idle intra-op CPU threads wait for the next piece of work: "always" busy-waits (onnxruntime's
# default: fastest back to back, but between two camera frames a spinning thread burns a core the
# robot's other processes need); "while_running" busy-waits only inside a run, between its operators,
# and sleeps between runs; "never" always sleeps, paying a wake-up at every parallel operator.
THREAD_SPINNING = ("never", "while_running", "always")


def check_thread_spinning(thread_spinning):
    if thread_spinning not in THREAD_SPINNING:
        raise ConfigError(f"thread_spinning={thread_spinning!r}, expected one of {', '.join(THREAD_SPINNING)}")


def session_options(threads, thread_spinning="always"):
    """All graph optimisations on; threads: intra-op CPU threads, None for onnxruntime's default;
    thread_spinning: one of THREAD_SPINNING."""
    check_thread_spinning(thread_spinning)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads is not None:
        options.intra_op_num_threads = threads
    if thread_spinning == "never":
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    elif thread_spinning == "while_running":
        options.add_session_config_entry("session.force_spinning_stop", "1")
    return options


class Detector(DetectionPipeline):
    """Runs an ONNX detection model on numpy images.

    model_path: ONNX file of a format in detr_ros.runtime.formats.FORMATS.
    providers: ordered preference from "tensorrt", "cuda", "cpu"; the first available one is used.
    threads: CPU intra-op threads (None: onnxruntime's default, one per physical core).
    thread_spinning: how idle CPU threads wait for work, one of THREAD_SPINNING. "always" suits
    back-to-back runs in an otherwise idle process (benchmarks); a process that runs the model on
    frames as they arrive, like the detector node, wants "never" or "while_running".
    tensorrt_options: dict of TensorRTOptions fields. labels_path: class names, one per line.
    input_size: (H, W) for graphs with a dynamic image size and no size in their metadata.
    model_format: a formats.FORMATS name, for a file whose format nothing in it decides.
    resize_mode ("stretch" | "letterbox"), normalization ("none" | "imagenet"): how images are
    prepared, where the file's format and metadata do not say it right.
    score_threshold, classes, max_detections, duplicate_iou: defaults for each call (see detect_batch).
    cache_dir: where optimised graphs and TensorRT engines are kept (default: default_cache_dir()).
    """

    def __init__(self, model_path, providers=("cpu",), *, threads=None, tensorrt_options=None, labels_path=None,
                 input_size=None, score_threshold=DEFAULT_SCORE_THRESHOLD, classes=None, max_detections=100,
                 duplicate_iou=DEFAULT_DUPLICATE_IOU, device_id=0, cache_dir=None, cache_optimized_model=True,
                 thread_spinning="always", model_format=None, resize_mode=None, normalization=None):
        self.model_path = check_model_file(model_path)
        check_thread_spinning(thread_spinning)
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"threads={threads!r}, expected a positive integer or None")
        selection = check_selection(score_threshold, classes, max_detections, duplicate_iou)
        self.model_sha256, has_qdq = file_digest(self.model_path)
        self._thread_spinning = thread_spinning
        self._cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        kept, skipped = resolve_providers(providers, ort.get_available_providers())
        self._session, failures = self._open_session(kept, threads, tensorrt_options, device_id, has_qdq,
                                                     cache_optimized_model)
        skipped.update(failures)
        self.provider = self._session.get_providers()[0]

        props = self._session.get_modelmeta().custom_metadata_map
        contract = formats.recognise(self._session.get_inputs(), self._session.get_outputs(), self.model_path, props,
                                     model_format)
        metadata = parse_metadata(props, self.model_path, declared_input_size=contract.input_size,
                                  labels_path=labels_path)
        if input_size is not None:
            if contract.input_size is not None and tuple(input_size) != contract.input_size:
                raise ConfigError(f"input_size={list(input_size)} but {self.model_path} has a fixed input "
                                  f"{list(contract.input_size)}")
            metadata.input_size = tuple(int(v) for v in input_size)
        preparation = formats.settle_preparation(contract, metadata, props, resize_mode=resize_mode,
                                                 normalization=normalization)
        names_source = self._complete_class_names(contract, metadata, labels_path)
        super().__init__(contract, metadata, selection)
        if self.provider == "TensorrtExecutionProvider" and self.metadata.quantization == QUANTIZATION_INT8_QDQ:
            LOG.warning("detector %s: this INT8 file is quantized for the CPU (uint8 activations with zero points), "
                        "which TensorRT cannot run in INT8; use the FP32 file (FP16) or export with --int8-symmetric",
                        self.model_path.name)
        if self.provider == "CPUExecutionProvider" and self.metadata.int8_weight_bits:
            problem = int8_weights_problem(self.metadata.int8_weight_bits)
            if problem is not None:
                LOG.warning("detector %s: this INT8 file may give wrong detections on this CPU: %s",
                            self.model_path.name, problem)
        skipped_text = "; ".join(f"{name}: {why}" for name, why in skipped.items())
        LOG.info("detector %s: format %s, input %dx%d %s, %d classes named by %s, running on %s%s",
                 self.model_path.name, self.signature, *self.metadata.input_size, preparation,
                 len(self.class_names), names_source, self.provider, f" (skipped {skipped_text})" if skipped else "")

    def _run_model(self, feeds):
        return self._session.run(self._contract.output_names, feeds)

    def _complete_class_names(self, contract, metadata, labels_path):
        """Check the names against the graph's class count, or choose them where none are given;
        returns where the names come from, for the log."""
        num_classes = contract.num_classes
        names = metadata.class_names
        source = f"labels file {labels_path}" if labels_path is not None else "the file's metadata"
        if names and num_classes is not None and len(names) != num_classes:
            error = ConfigError if labels_path is not None else ModelFileError
            raise error(f"{self.model_path}: {len(names)} class names in {source} for a {contract.kind} "
                        f"graph with {num_classes} classes")
        if names:
            return source
        metadata.class_names, metadata.category_ids, source = names_for_unnamed_graph(
            num_classes, contract.format.category_slots(num_classes))
        return source

    def _open_session(self, providers, threads, tensorrt_options, device_id, has_qdq, cache_optimized_model):
        """The first provider of the list that starts wins; the others fall back in order."""
        failures = {}
        trt_options = TensorRTOptions.from_dict(tensorrt_options)
        for position, provider in enumerate(providers):
            chain = providers[position:]
            provider_options = [self._provider_options(p, trt_options, device_id, has_qdq) for p in chain]
            try:
                session = self._session_with_cache(chain, provider_options, threads,
                                                   cache_optimized_model and provider == "CPUExecutionProvider")
            except Exception as error:  # onnxruntime raises its own exception types for a failed provider
                if provider == providers[-1]:
                    raise ModelFileError(f"{self.model_path}: onnxruntime cannot load it: {error}") from None
                failures[SHORT_NAMES[provider]] = f"failed to start ({str(error).splitlines()[0]})"
                continue
            if session.get_providers()[0] != provider:
                failures[SHORT_NAMES[provider]] = "failed to start (onnxruntime dropped it)"
            return session, failures

    def _provider_options(self, provider, trt_options, device_id, has_qdq):
        if provider == "TensorrtExecutionProvider":
            options, notes = tensorrt_provider_options(
                trt_options, device_id=device_id, model_sha256=self.model_sha256,
                carries_int8_calibration=has_qdq, trt_version=tensorrt_version(),
                gpu=gpu_identity(device_id), cache_root=self._cache_dir,
                fp16_file=declared_precision(self.model_path) == PRECISION_FP16)
            for note in notes:
                LOG.info("detector %s: %s", self.model_path.name, note)
            return options
        if provider == "CUDAExecutionProvider":
            return {"device_id": str(device_id)}
        return {}

    def _session_with_cache(self, providers, provider_options, threads, cache_optimized_model):
        """A session; on the CPU the optimised graph is saved once and loaded on later starts."""
        options = session_options(threads, self._thread_spinning)
        folder = self._cache_dir / "optimized"
        if cache_optimized_model:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                LOG.warning("detector %s: optimised-graph cache off, cannot create %s (%s)",
                            self.model_path.name, folder, error.strerror or error)
                cache_optimized_model = False
        if not cache_optimized_model:
            return ort.InferenceSession(str(self.model_path), options, providers=providers,
                                        provider_options=provider_options)
        cached = folder / f"{self.model_sha256[:16]}-ort{ort.__version__}-{cpu_identity()}.onnx"
        if cached.is_file():
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            try:
                return ort.InferenceSession(str(cached), options, providers=providers,
                                            provider_options=provider_options)
            except Exception as error:  # a damaged cache entry: rebuild it from the model
                LOG.warning("detector %s: ignoring damaged optimised-graph cache %s (%s)",
                            self.model_path.name, cached, str(error).splitlines()[0])
                cached.unlink(missing_ok=True)
                options = session_options(threads, self._thread_spinning)
        partial = folder / f"{cached.stem}.{os.getpid()}.{threading.get_ident()}.partial.onnx"
        options.optimized_model_filepath = str(partial)
        # onnxruntime warns that the saved graph is specific to this CPU; the cache key says so already.
        options.log_severity_level = 3
        session = ort.InferenceSession(str(self.model_path), options, providers=providers,
                                       provider_options=provider_options)
        if partial.is_file():
            os.replace(partial, cached)  # atomic: a concurrent start never reads a half-written graph
        return session
