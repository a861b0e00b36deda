"""The functional core: all recommendation logic, no Kafka.

The worker's Faust agent, offline evaluation and the tests all drive the same
`Engine`; see docs/architecture.md.
"""
