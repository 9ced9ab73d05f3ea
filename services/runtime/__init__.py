"""What every leadstream service shares: settings, Kafka, consumer loop, outbox, database, HTTP, clock.

No business logic lives here.
"""
