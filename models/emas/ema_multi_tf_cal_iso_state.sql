{{ config(materialized="view") }}

-- Per (id, tf, period) state of ema_multi_tf_cal_iso (emas.md §6.1), derived from the table and price_bars_multi_tf_cal_iso.
{{ ema_family_state('ema_multi_tf_cal_iso', 'price_bars_multi_tf_cal_iso', 'roll') }}
