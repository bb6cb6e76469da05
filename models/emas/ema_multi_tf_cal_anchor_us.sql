-- Dual EMA over the US anchored calendar bars (emas.md §5): see macros/emas/ema_calendar.sql.
{{ ema_calendar_model('US', anchored=true) }}
