{{ bar_family_config('price_bars_multi_tf_cal_anchor_us', 'anchored', 'US') }}

-- Anchored snapshot bars on the global US grid (bars.md §8); bar assignment in macros/bars/bar_lists.sql.
{{ bar_snapshot('anchored', 'US') }}
