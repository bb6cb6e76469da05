-- Dual EMA over the ISO anchored calendar bars (emas.md §5): see macros/emas/ema_calendar.sql.
{{ ema_calendar_model('ISO', anchored=true) }}
