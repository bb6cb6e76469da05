{{ config(materialized='table', tags=['emas']) }}

-- EMA alphas per (tf, period) (dim_timeframe.md §8.1, OP-D5): derived from the seeds, no
-- hard-coded timeframe list. Periods = the ema_periods seed plus any var('ema_periods').
with timeframes as (
    select
        tf,
        tf_days_nominal
    from {{ ref('dim_timeframe') }}
    where not is_intraday
),

periods as (
    select period from {{ ref('ema_periods') }}
    union
    select unnest({{ ema_periods_array() }}) as period
)

select
    t.tf,
    p.period,
    t.tf_days_nominal,
    2.0::float8 / (p.period::float8 * t.tf_days_nominal + 1) as alpha_ema_dailyspace,
    2.0::float8 / (p.period + 1) as alpha_bar,
    1.0::float8 - power(1.0::float8 - 2.0::float8 / (p.period + 1), 1.0::float8 / t.tf_days_nominal)
        as alpha_bar_preview_daily
from timeframes as t
cross join periods as p
