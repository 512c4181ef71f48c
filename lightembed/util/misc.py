"""`lightembed.util.misc`: sentence-transformers 6's `util.misc` module, helpers (similarity_fct_name, fullname, import_from_string), so that code
importing from sentence-transformers' `util.misc` keeps working with lightembed in its place. The functions live
in lightembed.util; a name lightembed does not provide raises lightembed.util's refusal, naming why."""

from __future__ import annotations

from lightembed.util import (  # noqa: F401 - re-exported
    __getattr__,  # noqa: F401 - its refusals, by name
    similarity_fct_name,
)

__all__ = ['similarity_fct_name']

