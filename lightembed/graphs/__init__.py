"""Opening model files: the `Graph` protocol every backend implements, `open_graph` (the one way a file is opened:
manifest record, backend policy, pre-optimized copy, verification), and the backends (onnxruntime, OpenVINO).

Modules: protocol (the Graph protocol and the input contract), providers (which onnxruntime providers a device
means), onnxruntime and openvino (the backends; onnxruntime.py is the one place sessions are created), policy
(which backend runs a file), preoptimized (copies saved already optimized for a CPU), integrity (a file against its
manifest record), opener (open_graph).
"""

from lightembed.graphs.opener import GraphOptions, OpenedGraph, open_graph
from lightembed.graphs.protocol import Graph
from lightembed.graphs.providers import CPU, CUDA, provider_names, resolve_providers

__all__ = ["CPU", "CUDA", "Graph", "GraphOptions", "OpenedGraph", "open_graph", "provider_names", "resolve_providers"]
