-- Features of the completed rolling N-day bars (issue 22); the indicators are in macros/features/features.sql.
{{ features('price_bars_multi_tf', 'rolling') }}
