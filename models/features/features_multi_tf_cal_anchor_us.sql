-- Features of the completed US anchored bars (issue 22); the indicators are in macros/features/features.sql.
{{ features('price_bars_multi_tf_cal_anchor_us', 'anchored', 'US') }}
