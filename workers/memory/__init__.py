"""Semantic memory: the subscriber (handler.py), recall and search for the story and the API
(recall.py), the embedding model (embedding.py, onnx_encoder.py) and the vector stores
(stores.py: pgvector; weaviate_store.py)."""
