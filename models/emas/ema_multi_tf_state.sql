{{ config(materialized="view") }}

-- Per (id, tf, period) state of ema_multi_tf (emas.md §6.1), derived from the table and price_bars_multi_tf.
{{ ema_family_state('ema_multi_tf', 'price_bars_multi_tf', 'roll') }}
