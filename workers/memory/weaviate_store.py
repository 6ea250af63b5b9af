"""The Weaviate vector store (weaviate-client v4): the production option from the seed's plan.

- One collection (WEAVIATE_COLLECTION, default TaskMemory) with self-provided vectors
  (we embed; Weaviate only indexes), HNSW with cosine distance.
- Per-user isolation by **multi-tenancy**: one tenant per user (`user-<id>`), created
  on first write. A query names its tenant, so it cannot see another user's objects,
  and each tenant has its own HNSW graph: the filtered-search recall problem of a
  shared index does not arise, and forgetting a user is dropping a tenant. The cost
  is a shard per user; Weaviate can offload inactive tenants.
- Deterministic ids (uuid5 of the task id): a repeated upsert overwrites, never duplicates.
- Batch upserts go through gRPC `BatchObjects`; any per-object error raises (transient:
  the outbox retries the delivery).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from django.conf import settings

from outbox.api import TransientError

from .stores import Hit, MemoryItem, SearchQuery, StoreUnavailable

logger = logging.getLogger(__name__)


def tenant_of(owner_id: int) -> str:
    return f"user-{owner_id}"


class WeaviateStore:
    name = "weaviate"

    def __init__(
        self, http_url: str, grpc_port: int, collection: str, api_key: str = "", grpc_host: str | None = None
    ) -> None:
        parts = urlsplit(http_url)
        self.http_host = parts.hostname or "127.0.0.1"
        self.http_port = parts.port or (443 if parts.scheme == "https" else 80)
        self.secure = parts.scheme == "https"
        self.grpc_host = grpc_host or self.http_host
        self.grpc_port = grpc_port
        self.collection_name = collection
        self.api_key = api_key
        self._client: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls) -> WeaviateStore:
        return cls(
            settings.WEAVIATE_URL,
            settings.WEAVIATE_GRPC_PORT,
            settings.WEAVIATE_COLLECTION,
            settings.WEAVIATE_API_KEY,
        )

    # --- connection and schema ------------------------------------------------
    def client(self) -> Any:
        """One connected client per process, made on first use; the collection is ensured then."""
        with self._lock:
            if self._client is None or not self._client.is_connected():
                import weaviate
                from weaviate.classes.init import Auth

                self._client = weaviate.connect_to_custom(
                    http_host=self.http_host,
                    http_port=self.http_port,
                    http_secure=self.secure,
                    grpc_host=self.grpc_host,
                    grpc_port=self.grpc_port,
                    grpc_secure=self.secure,
                    auth_credentials=Auth.api_key(self.api_key) if self.api_key else None,
                    # The init checks also ask pypi.org for a newer client: not from our workers.
                    # The schema call just below proves the server answers.
                    skip_init_checks=True,
                )
                self._ensure_collection(self._client)
            return self._client

    def _ensure_collection(self, client: Any) -> None:
        from weaviate.classes.config import Configure, DataType, Property, VectorDistances

        if client.collections.exists(self.collection_name):
            return
        client.collections.create(
            self.collection_name,
            vector_config=Configure.Vectors.self_provided(
                vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE)
            ),
            multi_tenancy_config=Configure.multi_tenancy(enabled=True, auto_tenant_creation=True),
            properties=[
                Property(name="task_id", data_type=DataType.TEXT),
                Property(name="title", data_type=DataType.TEXT),
                Property(name="text", data_type=DataType.TEXT),
                Property(name="completed_at", data_type=DataType.DATE),
            ],
        )
        logger.info("memory: created Weaviate collection %s", self.collection_name)

    def _collection(self, owner_id: int) -> Any:
        return self.client().collections.use(self.collection_name).with_tenant(tenant_of(owner_id))

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # --- the VectorStore interface ----------------------------------------------
    def upsert(self, items: Sequence[MemoryItem]) -> None:
        from weaviate.classes.data import DataObject
        from weaviate.util import generate_uuid5

        by_owner: dict[int, list[MemoryItem]] = defaultdict(list)
        for item in items:
            by_owner[item.owner_id].append(item)
        for owner_id, owned in by_owner.items():
            result = self._collection(owner_id).data.insert_many(
                [
                    DataObject(
                        uuid=generate_uuid5(i.task_id),
                        properties={
                            "task_id": i.task_id,
                            "title": i.title,
                            "text": i.text,
                            **({"completed_at": i.completed_at} if i.completed_at else {}),
                        },
                        vector=[float(x) for x in i.vector],
                    )
                    for i in owned
                ]
            )
            if result.has_errors:
                errors = {index: error.message for index, error in result.errors.items()}
                raise TransientError(f"Weaviate rejected {len(errors)} of {len(owned)} objects: {errors}")

    def delete(self, owner_id: int, task_ids: Sequence[str]) -> None:
        from weaviate.classes.query import Filter
        from weaviate.util import generate_uuid5

        self._collection(owner_id).data.delete_many(
            where=Filter.by_id().contains_any([generate_uuid5(t) for t in task_ids])
        )

    def search(
        self,
        owner_id: int,
        vector: np.ndarray,
        k: int,
        exclude: str | None = None,
        before: datetime | None = None,
    ) -> list[Hit]:
        from weaviate.classes.query import Filter, MetadataQuery
        from weaviate.exceptions import WeaviateBaseError, WeaviateQueryError

        try:
            response = self._collection(owner_id).query.near_vector(
                near_vector=[float(x) for x in vector],
                limit=k + 1 if exclude else k,
                filters=Filter.by_property("completed_at").less_than(before) if before else None,
                return_metadata=MetadataQuery(distance=True),
                return_properties=["task_id", "title"],
            )
        except WeaviateQueryError as exc:
            if "tenant not found" in str(exc).lower():
                return []  # a user with no memories yet has no tenant
            raise StoreUnavailable(f"weaviate search: {exc}") from exc
        except WeaviateBaseError as exc:
            raise StoreUnavailable(f"weaviate search: {exc}") from exc
        hits = [
            Hit(
                task_id=o.properties["task_id"],
                title=o.properties["title"],
                score=round(1 - o.metadata.distance, 4),
            )
            for o in response.objects
            if o.properties["task_id"] != exclude
        ]
        return hits[:k]

    def drop_tenant(self, owner_id: int) -> None:
        """Forget a user: drop their tenant, every memory in it. Idempotent: no tenant, no error.

        Raises StoreUnavailable when Weaviate cannot be reached or refuses; the caller logs it,
        and `manage.py memory forget-user ID` runs this again.
        """
        from weaviate.exceptions import UnexpectedStatusCodeError, WeaviateBaseError

        tenant = tenant_of(owner_id)
        try:
            self.client().collections.use(self.collection_name).tenants.remove([tenant])
        except UnexpectedStatusCodeError as exc:
            # Weaviate versions differ on a tenant that is not there: 200, or a 404/422 saying so.
            if exc.status_code in (404, 422) and "not found" in str(exc).lower():
                return
            raise StoreUnavailable(f"weaviate drop tenant {tenant}: {exc}") from exc
        except WeaviateBaseError as exc:
            raise StoreUnavailable(f"weaviate drop tenant {tenant}: {exc}") from exc
        logger.info("memory: dropped Weaviate tenant %s of user %s", tenant, owner_id)

    def vector_of(self, owner_id: int, task_id: str) -> np.ndarray | None:
        from weaviate.exceptions import WeaviateBaseError, WeaviateQueryError
        from weaviate.util import generate_uuid5

        try:
            obj = self._collection(owner_id).query.fetch_object_by_id(
                generate_uuid5(task_id), include_vector=True
            )
        except WeaviateQueryError as exc:
            if "tenant not found" in str(exc).lower():
                return None  # nothing stored for this user yet: the caller embeds afresh
            raise StoreUnavailable(f"weaviate fetch: {exc}") from exc
        except WeaviateBaseError as exc:
            raise StoreUnavailable(f"weaviate fetch: {exc}") from exc
        if obj is None or not obj.vector:
            return None
        vector = obj.vector.get("default") if isinstance(obj.vector, dict) else obj.vector
        return None if vector is None else np.asarray(vector, dtype=np.float32)

    # --- batches: Weaviate has no multi-vector query, so these loop (one request per task) ---
    def vector_of_many(self, keys: Sequence[tuple[int, str]]) -> dict[str, np.ndarray]:
        found = {task_id: self.vector_of(owner_id, task_id) for owner_id, task_id in keys}
        return {task_id: v for task_id, v in found.items() if v is not None}

    def search_many(self, queries: Sequence[SearchQuery], k: int) -> list[list[Hit]]:
        return [self.search(q.owner_id, q.vector, k, exclude=q.exclude, before=q.before) for q in queries]
