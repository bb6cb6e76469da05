-- Features of the validated daily bars (issue 22); the indicators are in macros/features/features.sql.
{{ features('price_bars_1d', 'daily') }}
