-- Calendar-aligned snapshot bars, ISO weeks (bars.md §7); bar assignment in macros/bars/bar_lists.sql.
{{ bar_snapshot('calendar', 'ISO') }}
