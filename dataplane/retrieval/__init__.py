"""The retrieval engine: stages (``bm25_search``, ``filter``, ``sort``, ``limit``) over collections.

``Engine(source).execute(...)`` runs a pipeline; ``validate_stages`` checks one without data
(the grammar is shared with the data plane, which checks retrievers as they are saved).
"""

from dataplane.retrieval.engine import Engine, Plan, Source
from dataplane.retrieval.index import SHARED_CACHE, DocumentSource, IndexCache
from dataplane.stages import STAGE_IDS
from dataplane.stages import validate as validate_stages

__all__ = ["STAGE_IDS", "SHARED_CACHE", "DocumentSource", "Engine", "IndexCache", "Plan", "Source",
           "validate_stages"]
