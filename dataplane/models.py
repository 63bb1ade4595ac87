"""Records and request bodies of the data plane: collections, documents, retrievers.

Stored records are msgspec structs that tolerate unknown fields (they evolve with defaults);
request bodies forbid them, as the API's bodies do. The bodies accept the keys the Mixpeek SDK
always sends with their defaults (``stream``, ``skip_cache``, ``case_sensitive``, …) so that its
models can call these routes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from shared.errors import Invalid
from shared.models import Request

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
MAX_BATCH = 1000
DEFAULT_PAGE = 10  # the SDK's default page_size
MAX_PAGE = 500

Name = Annotated[str, Meta(pattern=NAME_PATTERN)]
DocumentId = Annotated[str, Meta(pattern=ID_PATTERN)]
PageSize = Annotated[int, Meta(ge=1, le=MAX_PAGE)]


# Stored records


class Collection(msgspec.Struct, kw_only=True):
    collection_id: str
    collection_name: str
    description: str | None = None
    metadata: dict[str, Any] | None = None
    created_at: str
    # creation order for listings (created_at is only to the millisecond); not shown
    created_ns: int = 0

    def view(self, document_count: int = 0) -> CollectionView:
        return CollectionView(collection_id=self.collection_id, collection_name=self.collection_name,
                              description=self.description, metadata=self.metadata, created_at=self.created_at,
                              document_count=document_count)


class CollectionView(msgspec.Struct, kw_only=True):
    """A collection as the API shows it: with how many documents it holds."""

    collection_id: str
    collection_name: str
    description: str | None
    metadata: dict[str, Any] | None
    created_at: str
    document_count: int


class Document(msgspec.Struct, kw_only=True):
    document_id: str
    collection_id: str
    metadata: dict[str, Any]
    created_at: str
    # insertion order (batch time, then place in the batch), so that unranked results come
    # back in the order they were added; created_at is only to the millisecond
    created_ns: int = 0
    seq: int = 0

    def view(self) -> dict[str, Any]:
        return {"document_id": self.document_id, "collection_id": self.collection_id,
                "metadata": self.metadata, "created_at": self.created_at}


class Retriever(msgspec.Struct, kw_only=True):
    retriever_id: str
    retriever_name: str
    description: str | None = None
    collection_identifiers: list[str]
    stages: list[dict[str, Any]]
    input_schema: dict[str, Any] | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None
    created_at: str
    created_ns: int = 0  # creation order for listings; not shown

    def view(self) -> dict[str, Any]:
        out = msgspec.structs.asdict(self)
        del out["created_ns"]
        return out


# Request bodies


class CreateCollectionRequest(Request):
    collection_name: Name
    description: str | None = None
    metadata: dict[str, Any] | None = None


class ListCollectionsRequest(Request):
    search: str | None = None
    limit: Annotated[int, Meta(ge=1, le=1000)] | None = None
    page_size: Annotated[int, Meta(ge=1, le=1000)] | None = None
    offset: Annotated[int, Meta(ge=0, le=10_000)] | None = None
    page: Annotated[int, Meta(ge=1)] | None = None
    include_system: bool | None = False
    case_sensitive: bool | None = False


class AddDocumentRequest(Request):
    metadata: dict[str, Any] = {}
    document_id: DocumentId | None = None
    collection_id: str | None = None  # Mixpeek's body may repeat the path's collection


class AddDocumentsRequest(Request):
    documents: Annotated[list[AddDocumentRequest], Meta(min_length=1, max_length=MAX_BATCH)]


class CreateRetrieverRequest(Request):
    retriever_name: Name
    stages: list[dict[str, Any]]
    collection_identifiers: Annotated[list[str], Meta(min_length=1)]
    description: str | None = None
    input_schema: dict[str, dict[str, Any]] | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None
    requires_subscription: bool | None = False


class ListRetrieversRequest(Request):
    search: str | None = None
    case_sensitive: bool | None = False


class Pagination(Request):
    method: Literal["offset"] = "offset"
    page_size: PageSize | None = None
    page_number: Annotated[int, Meta(ge=1)] | None = None
    limit: PageSize | None = None
    offset: Annotated[int, Meta(ge=0)] | None = None


class _Execute(Request):
    inputs: dict[str, Any] | None = None
    filters: dict[str, Any] | None = None
    limit: PageSize | None = None
    pagination: Pagination | None = None
    stream: bool | None = False

    def page(self) -> tuple[int, int]:
        """``(limit, offset)``: ``pagination`` wins over the ``limit`` shorthand, as in Mixpeek."""
        if self.stream:
            raise Invalid("Streaming retriever execution is not supported; send stream=false",
                          code="stream_unsupported")
        p = self.pagination
        size = (p.page_size or p.limit if p is not None else None) or self.limit or DEFAULT_PAGE
        if p is None:
            return size, 0
        if p.offset is not None:
            return size, p.offset
        return size, ((p.page_number or 1) - 1) * size


class ExecuteRetrieverRequest(_Execute):
    # accepted because the SDK always sends them; results are never cached and carry no
    # vectors or blobs, so they change nothing
    skip_cache: bool | None = False
    return_presigned_urls: bool | None = False
    return_vectors: bool | None = False
    explain: bool | None = False


class AdhocExecuteRequest(_Execute):
    stages: list[dict[str, Any]] = []
    collection_identifiers: list[str] = []
    input_schema: dict[str, dict[str, Any]] | None = None
