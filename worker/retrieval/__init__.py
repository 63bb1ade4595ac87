"""The retrieval engine: stages (``bm25_search``, ``filter``, ``sort``, ``limit``) over collections.

``Engine(source).execute(...)`` runs a pipeline; ``validate_stages`` checks one without data
(the grammar is shared with the data plane, which checks retrievers as they are saved).
"""

from shared.stages import STAGE_IDS
from shared.stages import validate as validate_stages
from worker.retrieval.engine import Engine, Plan, Source
from worker.retrieval.index import SHARED_CACHE, DocumentSource, IndexCache

__all__ = ["STAGE_IDS", "SHARED_CACHE", "DocumentSource", "Engine", "IndexCache", "Plan", "Source",
           "validate_stages"]
