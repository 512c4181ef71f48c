"""`lightembed.util.similarity`: sentence-transformers 6's `util.similarity` module, similarity functions (cos_sim, dot_score, the pairwise ones, MaxSim, SimilarityFunction), so that code
importing from sentence-transformers' `util.similarity` keeps working with lightembed in its place. The functions live
in lightembed.util; a name lightembed does not provide raises lightembed.util's refusal, naming why."""

from __future__ import annotations

from lightembed.util import (  # noqa: F401 - re-exported
    SimilarityFunction,
    __getattr__,  # noqa: F401 - its refusals, by name
    cos_sim,
    dot_score,
    euclidean_sim,
    manhattan_sim,
    maxsim,
    maxsim_pairwise,
    mean_maxsim,
    mean_maxsim_pairwise,
    pairwise_cos_sim,
    pairwise_dot_score,
    pairwise_euclidean_sim,
    pairwise_manhattan_sim,
    pytorch_cos_sim,
)

__all__ = ['SimilarityFunction', 'cos_sim', 'dot_score', 'euclidean_sim', 'manhattan_sim', 'maxsim', 'maxsim_pairwise', 'mean_maxsim', 'mean_maxsim_pairwise', 'pairwise_cos_sim', 'pairwise_dot_score', 'pairwise_euclidean_sim', 'pairwise_manhattan_sim', 'pytorch_cos_sim']

