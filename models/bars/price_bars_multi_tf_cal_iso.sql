{{ bar_family_config('price_bars_multi_tf_cal_iso', 'calendar', 'ISO') }}

-- Calendar-aligned snapshot bars, ISO weeks (bars.md §7); bar assignment in macros/bars/bar_lists.sql.
{{ bar_snapshot('calendar', 'ISO') }}
