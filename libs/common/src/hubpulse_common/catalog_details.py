"""Where a catalog model's details are read: its scored features vector, the model version that scored them and
their explanation (the scorer's tables; the gateway's model page and the scorer's explanations read them).

A scorer batch writes each model-day's catalog row once, detail columns included, into its day's
`catalog_build` partition; the day's swap copies the narrow columns into `catalog_models`. A model's details
are the build row of the day its live catalog row holds; `catalog_details` keeps them for a model whose build
partition has been dropped (absent from the Hub for longer than the scorer keeps build days) and for rows
built before scorer migration 0017.
"""

from __future__ import annotations


def details_of(models: str) -> str:
    """A subquery for LATERAL: the details of the row `models` (a table or alias with `model_id` and
    `snapshot_date`, a `catalog_models` row) holds, one row or none: snapshot_date, model_version, explanation,
    features, names."""
    return f"""
        SELECT x.snapshot_date, x.model_version, x.explanation, x.features, s.names FROM (
            SELECT b.snapshot_date, b.model_version, b.explanation, b.features, b.feature_set, 0 AS source
            FROM catalog_build b
            WHERE b.model_id = {models}.model_id AND b.snapshot_date = {models}.snapshot_date
              AND b.features IS NOT NULL
            UNION ALL
            SELECT a.snapshot_date, a.model_version, a.explanation, a.features, a.feature_set, 1
            FROM catalog_details a WHERE a.model_id = {models}.model_id
            ORDER BY source LIMIT 1
        ) x LEFT JOIN catalog_feature_sets s USING (feature_set)"""  # noqa: S608 (identifiers are the callers' constants)
