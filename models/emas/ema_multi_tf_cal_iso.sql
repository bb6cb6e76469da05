-- Dual EMA over the ISO calendar bars (emas.md §4): see macros/emas/ema_calendar.sql.
{{ ema_calendar_model('ISO', anchored=false) }}
