"""`open_graph`: the one way a model file is opened. It reads the file's manifest record once, decides the backend
(lightembed.graphs.policy), picks the pre-optimized copy, verifies the file against its record while the session
is created, and opens it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from lightembed import manifest as manifests
from lightembed.graphs import integrity, policy, preoptimized
from lightembed.graphs.handoff import HandoffGraph
from lightembed.graphs.protocol import Graph, Modality
from lightembed.graphs.providers import CPU, CUDA, provider_names, resolve_providers
from lightembed.manifest import FileRecord, Manifest


@dataclass(frozen=True)
class GraphOptions:
    """How to open a file. `backend` None (or "torch") lets the policy choose; `verify` checks the file against
    the manifest; `preoptimized`/`spinning` None follow LIGHTEMBED_PREOPTIMIZED/LIGHTEMBED_SPINNING."""

    providers: tuple[Any, ...] = (CPU,)
    backend: str | None = None
    threads: int | None = None
    verify: bool = True
    preoptimized: bool | None = None
    spinning: bool | None = None
    ov_config: dict[str, Any] = field(default_factory=dict)
    preferred_outputs: tuple[str, ...] = ()
    modality: Modality = "text"
    optimize: bool = True
    """False when the file opened is a pre-optimized copy (set by open_graph, not by callers)."""

    @classmethod
    def for_device(cls, device: str | None = None, providers: Sequence[Any] | None = None, **kwargs: Any) -> GraphOptions:
        """Options with the providers `device`/`providers` mean (lightembed.graphs.providers.resolve_providers)."""
        return cls(providers=tuple(resolve_providers(device, providers)), **kwargs)

    @property
    def cpu_only(self) -> bool:
        return provider_names(self.providers) == [CPU]


@dataclass(frozen=True)
class OpenedGraph:
    """An open file and how it was opened: the graph, the file asked for and the one that runs (its pre-optimized
    copy, or itself), the backend and why, whether the manifest checked it, and its manifest record."""

    graph: Graph
    path: Path
    run_path: Path
    backend: str
    backend_reason: str
    verified: bool
    record: FileRecord | None
    options: GraphOptions

    @property
    def device(self) -> str:
        return "cuda" if any(p.startswith(CUDA) for p in self.graph.providers) else "cpu"

    @property
    def preoptimized(self) -> bool:
        """Whether calls run the pre-optimized copy (not after a hand-over to OpenVINO, which runs the file)."""
        return self.run_path != self.path and not getattr(self.graph, "handed_over", False)


def open_graph(folder: Path, path: Path, options: GraphOptions, manifest: Manifest | None = None) -> OpenedGraph:
    """Open `path` (a file inside `folder`) as `options` say. `manifest` is the folder's, when the caller read it
    already (read once per load); else it is read here, strictly when `options.verify`."""
    if manifest is None:
        manifest = manifests.read(folder, strict=options.verify)
    record = manifest.record(path) if manifest is not None else None
    decision = policy.decide(
        options.backend,
        cpu_only=options.cpu_only,
        manifest_entry=record.raw if record else None,
        static_table=path.suffix == ".safetensors",
    )
    backend, reason = decision.backend, decision.reason
    if decision.ov_config:  # a timed OpenVINO choice brings its precision hint; the caller's settings still win
        options = replace(options, ov_config={**decision.ov_config, **options.ov_config})
    # OpenVINO chosen by the policy (not asked for): onnxruntime answers until OpenVINO has compiled the file
    hand_over = backend == "openvino" and not decision.requested and options.cpu_only
    first_backend = "onnx" if hand_over else backend
    companion = pick_companion(folder, path, record, first_backend, options)
    check = integrity.check_in_background(folder, path, record, companion) if options.verify else None
    run_options = replace(options, optimize=companion is None)
    try:
        graph: Graph = policy.opener(first_backend)(companion or path, run_options)
    except ValueError:
        if check is not None:
            check()  # a damaged file: say so rather than the backend's parse error
        raise
    verified = check() is not None if check is not None else False
    if hand_over:  # OpenVINO opens the exported file itself, never a copy (options reused from a load may say so)
        later_options = replace(options, optimize=True)
        graph = HandoffGraph(graph, lambda: policy.opener(backend)(path, later_options))
        reason += "; onnxruntime answers until OpenVINO has compiled the file in the background (backend='openvino' opens it directly)"
    return OpenedGraph(graph, path, companion or path, backend, reason, verified, record, run_options)


def pick_companion(
    folder: Path, path: Path, record: FileRecord | None, backend: str, options: GraphOptions
) -> Path | None:
    """The pre-optimized copy of `path` to run instead, or None: only onnxruntime's CPU provider alone runs one."""
    if backend != "onnx" or not options.cpu_only or record is None:
        return None
    return preoptimized.companion_for(folder, path, record.preoptimized, options.preoptimized)
