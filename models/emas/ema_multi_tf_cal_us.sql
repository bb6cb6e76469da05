-- Dual EMA over the US calendar bars (emas.md §4): see macros/emas/ema_calendar.sql.
{{ ema_calendar_model('US', anchored=false) }}
