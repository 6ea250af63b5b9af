"""The Weaviate store with the real weaviate-client against a loopback Weaviate (REST + gRPC).

Set WEAVIATE_URL (and WEAVIATE_GRPC_PORT) to also run the live test against a real
server, e.g. the one docker-compose starts.
"""

import os
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from rest_framework.test import APIClient
from weaviate.util import generate_uuid5

from outbox.api import TransientError
from outbox.models import OutboxEvent
from tasks_app import services
from workers.memory import stores as vectorstores
from workers.memory.stores import MemoryItem
from workers.memory.weaviate_store import WeaviateStore, tenant_of

from .conftest import deliver
from .factories import TaskFactory, UserFactory
from .fake_weaviate import FakeWeaviate

pytestmark = pytest.mark.django_db


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=384).astype(np.float32)
    return v / np.linalg.norm(v)


def item(n: int, owner: int, title: str | None = None) -> MemoryItem:
    return MemoryItem(f"00000000-0000-4000-8000-{n:012d}", owner, title or f"task {n}", "text", unit(n))


@pytest.fixture
def fake_weaviate() -> Iterator[FakeWeaviate]:
    server = FakeWeaviate()
    yield server
    server.close()


@pytest.fixture
def store(fake_weaviate: FakeWeaviate) -> Iterator[WeaviateStore]:
    s = WeaviateStore(fake_weaviate.url, fake_weaviate.grpc_port, "TaskMemory")
    yield s
    s.close()


def test_creates_a_multi_tenant_collection_with_self_provided_cosine_vectors(store, fake_weaviate) -> None:
    store.search(1, unit(0), 3)
    schema = fake_weaviate.schemas["TaskMemory"]
    assert schema["multiTenancyConfig"]["enabled"] is True
    assert schema["multiTenancyConfig"]["autoTenantCreation"] is True
    [vector] = schema["vectorConfig"].values()
    assert vector["vectorizer"] == {"none": {}}
    assert vector["vectorIndexConfig"]["distance"] == "cosine"
    assert {p["name"]: p["dataType"] for p in schema["properties"]} == {
        "task_id": ["text"],
        "title": ["text"],
        "text": ["text"],
        "completed_at": ["date"],
    }
    assert not any("pypi" in path for _, path in fake_weaviate.rest_calls)


def test_upserts_are_idempotent_with_deterministic_ids(store, fake_weaviate) -> None:
    store.upsert([item(1, owner=7)])
    store.upsert([item(1, owner=7, title="renamed")])
    objects = fake_weaviate.objects[("TaskMemory", tenant_of(7))]
    assert list(objects) == [generate_uuid5(item(1, 7).task_id)]
    assert objects[generate_uuid5(item(1, 7).task_id)][0]["title"] == "renamed"


def test_search_is_nearest_first_and_scoped_to_the_owners_tenant(store) -> None:
    store.upsert([item(1, owner=7), item(2, owner=7), item(3, owner=8)])
    hits = store.search(7, unit(2), 5)
    assert [h.task_id for h in hits] == [item(2, 7).task_id, item(1, 7).task_id]
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert [h.task_id for h in store.search(8, unit(2), 5)] == [item(3, 8).task_id]
    assert store.search(9, unit(2), 5) == []  # no memories: no tenant yet
    assert [h.task_id for h in store.search(7, unit(2), 5, exclude=item(2, 7).task_id)] == [
        item(1, 7).task_id
    ]


def test_search_can_reach_only_before_a_moment(store) -> None:
    from datetime import UTC, datetime

    early = MemoryItem(**{**item(1, 7).__dict__, "completed_at": datetime(2026, 1, 1, tzinfo=UTC)})
    late = MemoryItem(**{**item(2, 7).__dict__, "completed_at": datetime(2026, 6, 1, tzinfo=UTC)})
    store.upsert([early, late])
    hits = store.search(7, unit(2), 5, before=datetime(2026, 3, 1, tzinfo=UTC))
    assert [h.task_id for h in hits] == [early.task_id]


def test_delete_and_vector_of(store) -> None:
    store.upsert([item(1, owner=7), item(2, owner=7)])
    assert np.allclose(store.vector_of(7, item(1, 7).task_id), unit(1), atol=1e-6)
    assert store.vector_of(8, item(1, 7).task_id) is None  # another tenant
    store.delete(7, [item(1, 7).task_id])
    assert [h.task_id for h in store.search(7, unit(1), 5)] == [item(2, 7).task_id]
    assert store.vector_of(7, item(1, 7).task_id) is None


def test_batch_errors_are_checked_and_raise_a_transient_error(store, fake_weaviate) -> None:
    fake_weaviate.reject_next = 1
    with pytest.raises(TransientError, match="Weaviate rejected 1 of 2 objects"):
        store.upsert([item(1, owner=7), item(2, owner=7)])


def test_the_memory_subscriber_and_search_api_on_weaviate(
    fake_weaviate, settings, api: APIClient, user
) -> None:
    settings.MEMORY_STORE = "weaviate"
    settings.WEAVIATE_URL = fake_weaviate.url
    settings.WEAVIATE_GRPC_PORT = fake_weaviate.grpc_port
    vectorstores.get_store.cache_clear()
    try:
        for title in ("Bake sourdough bread", "Renew passport"):
            task = TaskFactory(owner=user, title=title, project=None)
            services.complete_task(task, by=user)
            assert deliver("memory", OutboxEvent.objects.latest("id")) == {"succeeded": 1}
        other = TaskFactory(owner=UserFactory(), title="Bake rye bread", project=None)
        services.complete_task(other, by=other.owner)
        deliver("memory", OutboxEvent.objects.latest("id"))
        results = api.get("/api/memory/search/", {"q": "baking", "k": 5}).json()["results"]
        assert [r["title"] for r in results] == ["Bake sourdough bread", "Renew passport"]
        services.delete_task(task)
        deliver("memory", OutboxEvent.objects.get(type="task.deleted"))
        assert [r["title"] for r in api.get("/api/memory/search/", {"q": "baking"}).json()["results"]] == [
            "Bake sourdough bread"
        ]
    finally:
        vectorstores.get_store().close()
        vectorstores.get_store.cache_clear()


@pytest.mark.skipif(
    not os.environ.get("WEAVIATE_URL"), reason="set WEAVIATE_URL to test against a live Weaviate"
)
def test_live_weaviate_round_trip() -> None:
    live = WeaviateStore(
        os.environ["WEAVIATE_URL"],
        int(os.environ.get("WEAVIATE_GRPC_PORT", "50051")),
        f"SelfosTest{uuid.uuid4().hex[:8]}",
        os.environ.get("WEAVIATE_API_KEY", ""),
    )
    try:
        live.upsert([item(1, owner=1), item(2, owner=1), item(3, owner=2)])
        live.upsert([item(1, owner=1)])
        assert live.search(1, unit(2), 5)[0].task_id == item(2, 1).task_id
        assert len(live.search(1, unit(2), 5)) == 2
        live.delete(1, [item(2, 1).task_id])
        assert [h.task_id for h in live.search(1, unit(2), 5)] == [item(1, 1).task_id]
    finally:
        live.client().collections.delete(live.collection_name)
        live.close()
