"""Delivery: email digests of the ranked insights (and, next, the serving snapshot for the API)."""
