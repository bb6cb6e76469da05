-- Calendar-aligned snapshot bars, US weeks (bars.md §7); bar assignment in macros/bars/bar_lists.sql.
{{ bar_snapshot('calendar', 'US') }}
