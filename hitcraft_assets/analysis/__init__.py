"""Analysis stage: identity, sessions, metrics, funnels, retention and segment comparisons, in SQL."""
