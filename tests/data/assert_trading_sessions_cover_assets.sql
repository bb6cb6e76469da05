-- Issue 21: an id on an exchange calendar needs that calendar's sessions over its whole range in
-- trading_sessions (`driver gaps` / `driver fetch` write them); otherwise its gaps would be wrong.
-- depends_on: {{ ref('source_completeness') }} (its pre-hook creates the calendar tables)
select
    id,
    calendar,
    first_day,
    last_day
from {{ ref('asset_session_bounds') }}
where not is_covered
