"""`lightembed.util.retrieval`: sentence-transformers 6's `util.retrieval` module, search and mining (semantic_search, paraphrase_mining, community_detection, information_retrieval), so that code
importing from sentence-transformers' `util.retrieval` keeps working with lightembed in its place. The functions live
in lightembed.util; a name lightembed does not provide raises lightembed.util's refusal, naming why."""

from __future__ import annotations

from lightembed.util import (  # noqa: F401 - re-exported
    __getattr__,  # noqa: F401 - its refusals, by name
    community_detection,
    information_retrieval,
    paraphrase_mining,
    paraphrase_mining_embeddings,
    semantic_search,
)

__all__ = ['community_detection', 'information_retrieval', 'paraphrase_mining', 'paraphrase_mining_embeddings', 'semantic_search']

