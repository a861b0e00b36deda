"""streamrec: a streaming, real-time recommendation engine for e-commerce on Kafka."""

__version__ = "0.1.0"
