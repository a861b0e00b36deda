"""Ranking: candidate sources (co-visitation, popularity), features, the models (fixed
blend, online ranker, value), A/B variants, and the recommender that runs them.
"""
