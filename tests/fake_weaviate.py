"""A loopback Weaviate: the REST and gRPC calls weaviate-client v4 makes for our store, with real vectors.

REST: /v1/meta, OIDC discovery (none), /v1/schema (exists, create). gRPC: the health
check, and Weaviate's BatchObjects, Search (near_vector, fetch by id) and BatchDelete,
over an in-memory multi-tenant collection that computes real cosine distances.
"""

from __future__ import annotations

import struct
import threading
import uuid
from collections import defaultdict
from concurrent import futures
from datetime import datetime
from typing import Any

import grpc
import numpy as np
from google.protobuf.json_format import MessageToDict
from weaviate.proto.v1 import (
    batch_delete_pb2,
    batch_pb2,
    health_weaviate_pb2,
    properties_pb2,
    search_get_pb2,
    weaviate_pb2_grpc,
)

from .fakes import _JSONHandler, _Server


def _floats(raw: bytes) -> np.ndarray:
    return np.asarray(struct.unpack(f"<{len(raw) // 4}f", raw), dtype=np.float32)


def _filter_ids(filters: Any) -> list[str]:
    """The object ids an id filter (equal or contains_any, possibly nested) names."""
    found = list(filters.value_text_array.values) or ([filters.value_text] if filters.value_text else [])
    for sub in filters.filters:
        found += _filter_ids(sub)
    return found


def _matches(request: Any, object_id: str, props: dict[str, Any]) -> bool:
    """The two filters our store sends: by id, and completed_at < a date."""
    if not request.HasField("filters"):
        return True
    f = request.filters
    if f.target.property == "completed_at" and f.operator == f.OPERATOR_LESS_THAN:
        value = props.get("completed_at")
        return value is not None and datetime.fromisoformat(value) < datetime.fromisoformat(f.value_text)
    return object_id in _filter_ids(f)


class _RESTHandler(_JSONHandler):
    def do_GET(self) -> None:
        fake: FakeWeaviate = self.server.fake  # type: ignore[attr-defined]
        fake.rest_calls.append(("GET", self.path))
        if self.path == "/v1/meta":
            self.reply(200, {"version": "1.28.2", "hostname": "http://[::]:8080", "modules": {}})
        elif self.path.startswith("/v1/.well-known/openid-configuration"):
            self.reply(404, {})
        elif self.path.startswith("/v1/.well-known/ready"):
            self.reply(200, {})
        elif self.path.startswith("/v1/schema/"):
            name = self.path.split("/")[3].split("?")[0]
            if name in fake.schemas:
                self.reply(200, fake.schemas[name])
            else:
                self.reply(404, {"error": [{"message": "class not found"}]})
        else:
            self.reply(404, {"error": [{"message": f"fake weaviate has no GET {self.path}"}]})

    def do_POST(self) -> None:
        fake: FakeWeaviate = self.server.fake  # type: ignore[attr-defined]
        body = self.body()
        fake.rest_calls.append(("POST", self.path))
        if self.path == "/v1/schema":
            fake.schemas[body["class"]] = body
            self.reply(200, body)
        else:
            self.reply(404, {"error": [{"message": f"fake weaviate has no POST {self.path}"}]})

    def do_DELETE(self) -> None:
        """DELETE /v1/schema/{collection}/tenants, as Weaviate answers it: 200, missing ones ignored."""
        fake: FakeWeaviate = self.server.fake  # type: ignore[attr-defined]
        names = self.body()
        fake.rest_calls.append(("DELETE", self.path))
        parts = self.path.split("/")
        if len(parts) == 5 and parts[2] == "schema" and parts[4] == "tenants":
            with fake.lock:
                for name in names:
                    fake.objects.pop((parts[3], name), None)
            self.reply(200, [])
        else:
            self.reply(404, {"error": [{"message": f"fake weaviate has no DELETE {self.path}"}]})


class _WeaviateServicer(weaviate_pb2_grpc.WeaviateServicer):
    def __init__(self, fake: FakeWeaviate) -> None:
        self.fake = fake

    def BatchObjects(self, request: Any, context: Any) -> Any:
        errors = []
        with self.fake.lock:
            for index, obj in enumerate(request.objects):
                if self.fake.reject_next:
                    self.fake.reject_next -= 1
                    errors.append(
                        batch_pb2.BatchObjectsReply.BatchError(index=index, error="fake: shard busy")
                    )
                    continue
                if not request.objects[index].tenant:
                    errors.append(
                        batch_pb2.BatchObjectsReply.BatchError(
                            index=index, error="has multi-tenancy enabled, but request was without tenant"
                        )
                    )
                    continue
                raw = obj.vectors[0].vector_bytes if obj.vectors else obj.vector_bytes
                vector = _floats(raw) if raw else np.asarray(obj.vector, dtype=np.float32)
                props = MessageToDict(obj.properties.non_ref_properties)
                self.fake.objects[(obj.collection, obj.tenant)][obj.uuid] = (props, vector)
        return batch_pb2.BatchObjectsReply(took=0.001, errors=errors)

    def Search(self, request: Any, context: Any) -> Any:
        with self.fake.lock:
            key = (request.collection, request.tenant)
            if request.tenant not in self.fake.tenants(request.collection):
                context.abort(grpc.StatusCode.UNKNOWN, f'tenant not found: "{request.tenant}"')
            items = self.fake.objects.get(key, {})
            candidates = [(u, p, v) for u, (p, v) in items.items() if _matches(request, u, p)]
            if request.HasField("near_vector"):
                nv = request.near_vector
                raw = nv.vectors[0].vector_bytes if nv.vectors else nv.vector_bytes
                query = _floats(raw) if raw else np.asarray(nv.vector, dtype=np.float32)
                scored = [
                    (1 - float(v @ query / (np.linalg.norm(v) * np.linalg.norm(query))), u, p, v)
                    for u, p, v in candidates
                ]
                scored.sort(key=lambda row: row[0])
            else:
                scored = [(0.0, u, p, v) for u, p, v in candidates]
            limit = request.limit or len(scored)
        results = []
        for distance, object_id, props, vector in scored[:limit]:
            fields = {k: properties_pb2.Value(text_value=str(val)) for k, val in props.items()}
            metadata = search_get_pb2.MetadataResult(
                id=object_id,
                id_as_bytes=uuid.UUID(object_id).bytes,
                distance=distance,
                distance_present=True,
                creation_time_unix=1_700_000_000_000,
                creation_time_unix_present=True,
                last_update_time_unix=1_700_000_000_000,
                last_update_time_unix_present=True,
            )
            if request.metadata.vector or request.metadata.vectors:
                from weaviate.proto.v1 import base_pb2

                metadata.vectors.append(
                    base_pb2.Vectors(name="default", vector_bytes=struct.pack(f"<{len(vector)}f", *vector))
                )
            results.append(
                search_get_pb2.SearchResult(
                    properties=search_get_pb2.PropertiesResult(
                        non_ref_props=properties_pb2.Properties(fields=fields),
                        target_collection=request.collection,
                    ),
                    metadata=metadata,
                )
            )
        self.fake.searches += 1
        return search_get_pb2.SearchReply(took=0.001, results=results)

    def BatchDelete(self, request: Any, context: Any) -> Any:
        with self.fake.lock:
            items = self.fake.objects.get((request.collection, request.tenant), {})
            ids = _filter_ids(request.filters)
            matched = [i for i in ids if i in items]
            for object_id in matched:
                del items[object_id]
        return batch_delete_pb2.BatchDeleteReply(took=0.001, matches=len(matched), successful=len(matched))


class FakeWeaviate(_Server):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.schemas: dict[str, dict[str, Any]] = {}
        # (collection, tenant) -> uuid -> (properties, vector)
        self.objects: dict[tuple[str, str], dict[str, tuple[dict[str, Any], np.ndarray]]] = defaultdict(dict)
        self.rest_calls: list[tuple[str, str]] = []
        self.reject_next = 0
        self.searches = 0
        super().__init__(_RESTHandler)
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        weaviate_pb2_grpc.add_WeaviateServicer_to_server(_WeaviateServicer(self), self.grpc)
        health = grpc.unary_unary_rpc_method_handler(
            lambda request, context: health_weaviate_pb2.WeaviateHealthCheckResponse(
                status=health_weaviate_pb2.WeaviateHealthCheckResponse.SERVING
            ),
            request_deserializer=health_weaviate_pb2.WeaviateHealthCheckRequest.FromString,
            response_serializer=health_weaviate_pb2.WeaviateHealthCheckResponse.SerializeToString,
        )
        self.grpc.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": health})]
        )
        self.grpc_port = self.grpc.add_insecure_port("127.0.0.1:0")
        self.grpc.start()

    def tenants(self, collection: str) -> set[str]:
        return {tenant for (c, tenant) in self.objects if c == collection}

    def close(self) -> None:
        self.grpc.stop(0)
        super().close()
