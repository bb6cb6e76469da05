-- Features of the completed ISO calendar bars (issue 22); the indicators are in macros/features/features.sql.
{{ features('price_bars_multi_tf_cal_iso', 'calendar', 'ISO') }}
