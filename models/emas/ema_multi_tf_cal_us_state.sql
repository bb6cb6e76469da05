{{ config(materialized="view") }}

-- Per (id, tf, period) state of ema_multi_tf_cal_us (emas.md §6.1), derived from the table and price_bars_multi_tf_cal_us.
{{ ema_family_state('ema_multi_tf_cal_us', 'price_bars_multi_tf_cal_us', 'roll') }}
