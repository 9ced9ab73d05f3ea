"""The consumer core: one loop for every consumer of the contract topics (see docs/reliability.md).

- :mod:`.loop` — the consumer-group loop: poll, commit, rebalance listener, pause and rewind.
- :mod:`services.runtime.consumer` — per-record mode: decode -> processed-event id + handler + outbox
  in one transaction (every service's handlers).
- :mod:`.batch` — batch mode: a checkpoint stores the offsets with the effects in one transaction,
  record faults are isolated by splitting the batch (the projection, live and rebuilding).
- :mod:`.policy` — what to do after a failure, by cause (``faults.classify``).
- :mod:`.deadletter` — the one dead-letter publisher.
- :mod:`.reader` — reading offset ranges without a group (rebuilds, exports, the DLQ tools).
"""
