-- Rolling N-day snapshot bars (bars.md §6); bar assignment in macros/bars/bar_lists.sql.
{{ bar_snapshot('rolling') }}
