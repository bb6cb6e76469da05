{{ config(materialized="view") }}

-- Per (id, tf, period) state of ema_multi_tf_v2 (emas.md §6.1), derived from the table and price_bars_1d.
{{ ema_family_state('ema_multi_tf_v2', 'price_bars_1d', 'roll') }}
