"""The partner event collector: ``POST /v1/events`` (signed, idempotent, loss-free) into the warehouse's raw
tables and, for purchases, the online store within seconds. ``ltvfeed collect`` runs it; ``ltvfeed partners``
manages who may send; :class:`ltvfeed.collector.client.EventClient` is the Python sender."""
