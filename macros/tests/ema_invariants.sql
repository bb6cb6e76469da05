{#- The EMA checks of emas.md §7.2 as one generic test per EMA table: every value present (OP-11),
    every tf a timeframe of the family with tf_days = tf_days_nominal (OP-6, OP-7), and the
    derivative identities of §1.3 (d1_roll = ema - previous ema, d2_roll likewise). Key and
    canonical uniqueness are the table's unique indexes. Reads barsmith_scoped(model, 'previous'):
    the rows a build wrote and the row before them per series, or the whole table in the full
    audit (macros/tests/scope.sql). -#}
{% test ema_invariants(model, timeframes, families) %}
    with scoped as {{ barsmith_materialized_cte() }} (
        select * from {{ barsmith_scoped(model, 'previous') }} as s
    ),

    ordered as (
        select
            *,
            lag(ema) over w as prev_ema,
            lag(d1_roll) over w as prev_d1_roll
        from scoped
        window w as (partition by id, tf, period order by ts)
    )

    select 'not_null' as rule, id, tf, period, ts from scoped
    where barsmith_checked and (id is null or tf is null or ts is null or period is null or ema is null
                                or roll is null or tf_days is null)

    union all
    select 'timeframe_and_tf_days', e.id, e.tf, e.period, e.ts
    from scoped as e
    left join {{ timeframes }} as d
        on e.tf = d.tf and d.family in ({% for f in families %}{{ sql_string(f) }}{% if not loop.last %}, {% endif %}{% endfor %})
    where e.barsmith_checked and (d.tf is null or e.tf_days <> d.tf_days_nominal)

    union all
    select 'roll_derivatives', id, tf, period, ts from ordered
    where
        barsmith_checked
        and (
            (prev_ema is not null and d1_roll is distinct from ema - prev_ema)
            or (prev_d1_roll is not null and d2_roll is distinct from d1_roll - prev_d1_roll)
        )
{% endtest %}
