"""A worker's own /metrics, for hosts where no web process reads the Prometheus files.

On one host (`make run`) every process writes its histograms to PROMETHEUS_MULTIPROC_DIR
and the web's /metrics sums them. A worker on a host (or in a container) of its own sets
SELFOS_WORKER_METRICS_PORT: its main process then serves the same sum, for its pool
processes, on that port (SELFOS_WORKER_METRICS_ADDRESS, loopback by default: the figures
are not secret, but nothing outside should reach a worker). Prefork pool processes can only
be summed through the files, so the port needs PROMETHEUS_MULTIPROC_DIR too.
"""

from __future__ import annotations

import logging
import os

from prometheus_client import CollectorRegistry, multiprocess, start_http_server

logger = logging.getLogger(__name__)


def serve_from_env() -> int | None:
    """Start the metrics server if SELFOS_WORKER_METRICS_PORT asks for one; returns its port."""
    port = os.environ.get("SELFOS_WORKER_METRICS_PORT")
    if not port:
        return None
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory or not os.path.isdir(directory):
        logger.error(
            "SELFOS_WORKER_METRICS_PORT is set but PROMETHEUS_MULTIPROC_DIR is not an existing "
            "directory (%r): the pool processes' metrics cannot be summed, so none are served",
            directory,
        )
        return None
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    address = os.environ.get("SELFOS_WORKER_METRICS_ADDRESS", "127.0.0.1")
    server, _ = start_http_server(int(port), addr=address, registry=registry)
    bound = int(server.server_address[1])
    logger.info("worker metrics on http://%s:%d/metrics", address, bound)
    return bound
