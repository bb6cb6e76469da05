-- Anchored snapshot bars on the global US grid (bars.md §8); bar assignment in macros/bars/bar_lists.sql.
{{ bar_snapshot('anchored', 'US') }}
