{{ ema_calendar_config('ema_multi_tf_cal_iso', 'ISO', false) }}

-- Dual EMA over the ISO calendar bars (emas.md §4): see macros/emas/ema_calendar.sql.
{{ ema_calendar_model('ISO', anchored=false) }}
