{{ config(materialized="view") }}

-- Per (id, tf) state of price_bars_multi_tf (bars.md §9.1), derived from the table and its range fingerprints.
{{ bar_family_state('price_bars_multi_tf') }}
