"""Monitoring: counters and windows, online quality, drift, histograms, alerts, A/B
reports.
"""
