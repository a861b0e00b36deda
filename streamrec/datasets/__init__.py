"""Data sets and event-log readers: what `streamrec replay` feeds into Kafka."""
