{{ bar_family_config('price_bars_multi_tf_cal_us', 'calendar', 'US') }}

-- Calendar-aligned snapshot bars, US weeks (bars.md §7); bar assignment in macros/bars/bar_lists.sql.
{{ bar_snapshot('calendar', 'US') }}
