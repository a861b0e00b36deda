"""The one place `Settings` becomes a core: the shell's builder of an `Engine`.

The core (`streamrec/core/`) takes plain values and never reads settings or
files; the worker, offline evaluation, benchmarks and tests all build their
engine here, so they run the same configuration from the same environment.

>>> from streamrec.settings import Settings
>>> engine = build_engine(Settings())
>>> engine.recommender.top_k == Settings().top_k
True
"""

from __future__ import annotations

from streamrec.contracts import CATALOG_EMBEDDINGS, STOREFRONT_EVENTS, load_contract, partitions_for
from streamrec.core import kernels
from streamrec.core.deadletters import DeadLetterWriter
from streamrec.core.engine import Engine
from streamrec.core.ingest import Deduplicator, Ingestor
from streamrec.core.items import ItemStore
from streamrec.core.monitoring.drift import DriftMonitor
from streamrec.core.monitoring.monitor import Monitor
from streamrec.core.monitoring.quality import OnlineQuality
from streamrec.core.privacy import Pseudonymizer, Sealer
from streamrec.core.profile import ProfileUpdater
from streamrec.core.ranking.models import FixedBlend, OnlineRanker
from streamrec.core.ranking.recommender import Recommender
from streamrec.core.ranking.regression import ItemRegression
from streamrec.core.ranking.tuner import BlendTuner
from streamrec.core.retrieval.interest import InterestModel
from streamrec.core.retrieval.vectors import ItemVectors
from streamrec.settings import Settings


def build_engine(s: Settings, recommender: Recommender | None = None) -> Engine:
    """An engine configured by `s` (a fresh `Recommender` unless one is given)."""
    kernels.warm()  # compiled or loaded now, not in the first batch
    pseudonymize = Pseudonymizer(s.resolved_pseudonym_key())
    ingestor = Ingestor(
        pseudonymize,
        validate=load_contract(STOREFRONT_EVENTS).validator,
        max_event_bytes=s.max_event_bytes,
        min_ts_ms=s.min_event_ts_ms,
        max_future_skew_ms=int(s.max_future_skew_s * 1000),
        dedup=Deduplicator(int(s.dedup_window_s * 1000), s.dedup_max_ids),
    )
    updater = ProfileUpdater(
        recent_items=s.recent_items,
        purchased_items=s.purchased_items,
        affinity_half_life_s=s.affinity_half_life_s,
        session_gap_s=s.session_gap_s,
        history_items=s.history_items,
        history_types=s.history_type_set(),
        event_ids=s.dedup_profile_ids,
    )
    recommender = recommender or build_recommender(s)
    return Engine(
        ingestor,
        updater,
        recommender,
        item_vectors=ItemVectors(
            partitions_for(CATALOG_EMBEDDINGS, s.partitions),
            store=recommender.items,
            hnsw_above=s.index_hnsw_above,
        ),
        query_cache_size=s.scorer_cache_size,
        query_candidates=s.query_candidates,
        interest=InterestModel(s.interest_half_life_s, s.intent_half_life_s),
        interest_candidates=s.interest_candidates,
        experiment=s.experiment_config(),
        monitor=build_monitor(s) if s.monitoring else None,
        dead_letters=build_dead_letters(s, pseudonymize),
    )


def build_dead_letters(s: Settings, pseudonymize: Pseudonymizer | None = None) -> DeadLetterWriter:
    """Dead letters keyed by pseudonym, their bytes sealed with the DLQ key."""
    return DeadLetterWriter(
        pseudonymize or Pseudonymizer(s.resolved_pseudonym_key()),
        Sealer(s.resolved_dlq_key()),
        s.dlq_original_max_bytes,
    )


def build_recommender(s: Settings) -> Recommender:
    return Recommender(
        ItemStore(),
        top_k=s.top_k,
        trending_half_life_s=s.trending_half_life_s,
        covisit_window=s.covisit_window,
        covisit_max_neighbours=s.covisit_max_neighbours,
        covisit_distance_decay=s.covisit_distance_decay,
        covisit_type_weights=s.covisit_type_weights,
        covisit_prior=s.covisit_prior,
        blend=s.blend_weight_map(),
        offer_pool=s.ranker_offers == "pool",
        anchors=s.covisit_anchors,
        sequence_anchors=s.sequence_anchors,
        factors_dim=s.factors_dim,
        factors_every=s.factors_every,
        factors_history=s.factors_history,
        regression=ItemRegression(
            items=s.regression_items,
            every=s.regression_every,
            l2=s.regression_l2,
            window=s.regression_window,
            history=s.regression_history,
        ),
        exclude_purchased=s.exclude_purchased,
        exclude_recent=s.exclude_recent,
        max_per_category=s.max_per_category,
        rank_pool=s.rank_pool,
        tuner=(
            BlendTuner(
                FixedBlend(s.blend_weight_map()).weights(),
                sample=s.blend_tuning_sample,
                min_scored=s.blend_tuning_min_scored,
                max_users=s.tracked_users,
            )
            if s.blend_tuning_sample > 0
            else None
        ),
        ranker=OnlineRanker(
            min_updates=s.ranker_min_updates,
            window_s=s.feedback_window_s,
            negative_rate=s.negative_rate,
            feedback=s.ranker_feedback,
            list_negative_rate=s.list_negative_rate,
            objective=s.ranker_objective,
            margin=s.ranker_margin,
            max_pending_users=s.tracked_users,
        )
        if s.ranker_enabled
        else None,
    )


def build_monitor(s: Settings) -> Monitor:
    return Monitor(
        OnlineQuality(s.quality_k, s.feedback_window_s, max_users=s.tracked_users),
        DriftMonitor(
            warmup=s.drift_warmup,
            adwin_delta=s.drift_adwin_delta,
            ph_threshold=s.drift_ph_threshold,
            psi_threshold=s.drift_psi_threshold,
            psi_chunk=s.drift_psi_chunk,
            query_chunk=max(4, s.drift_psi_chunk // 4),
        ),
    )
