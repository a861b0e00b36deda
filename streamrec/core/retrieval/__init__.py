"""Retrieval: the item index (FAISS, rows as ids), item vectors per encoder version, user
interest vectors.
"""
