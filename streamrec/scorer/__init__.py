"""The BERT scorer: text encoder and query cache (Kafka-free), and later its worker."""
