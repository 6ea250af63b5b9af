"""The backlog suite's Django app: four subscribers that do nothing but be delivered.

The backlog suite measures the outbox itself (relay paging through a 100,000-event
backlog, workers claiming and recording 400,000 deliveries) and the memory of the
processes doing it; the real subscribers' own costs are the latency and sustained
suites'. Installed only by bench/backlog/settings.py, so the service never sees it.
"""
