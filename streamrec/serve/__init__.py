"""`streamrec serve`: the HTTP serving layer in front of streamrec's topics.

* `store`: the replica's on-disk copy of `recommendations` (RocksDB), with offsets;
* `state`: what a replica knows (lists, catalog, item vectors, popularity, health)
  and the answers it gives, without Kafka or HTTP;
* `follow`: the one consumer that keeps the state current;
* `http`: access keys, CORS, JSON errors, request metrics;
* `api`: the routes; `openapi`: their description; `static/`: the page (/ui);
* `app`: the process (`run_serve`).

No hop on the main path: workers publish lists as before, and any number of
replicas read them.
"""
