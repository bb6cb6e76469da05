{{ ema_calendar_config('ema_multi_tf_cal_anchor_iso', 'ISO', true) }}

-- Dual EMA over the ISO anchored calendar bars (emas.md §5): see macros/emas/ema_calendar.sql.
{{ ema_calendar_model('ISO', anchored=true) }}
