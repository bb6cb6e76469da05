{#- EMA checks of emas.md §7.2 (key integrity, canonical uniqueness, tf membership, tf_days
    constant, spacing of canonical rows) as generic tests. -#}

{# tf_days is constant within a tf and equals the nominal length (OP-6, OP-7). #}
{% test ema_tf_days_nominal(model, timeframes) %}
    select e.tf, e.tf_days, d.tf_days_nominal, count(*) as n_rows
    from {{ model }} as e
    left join {{ timeframes }} as d on e.tf = d.tf
    group by e.tf, e.tf_days, d.tf_days_nominal
    having d.tf_days_nominal is null or e.tf_days <> d.tf_days_nominal
{% endtest %}

{# Derivative identities of §1.3 over each series: d1_roll = ema - previous ema, d2_roll likewise. #}
{% test ema_roll_derivatives(model) %}
    with ordered as (
        select
            id, tf, period, ts, ema, d1_roll, d2_roll,
            lag(ema) over w as prev_ema,
            lag(d1_roll) over w as prev_d1_roll
        from {{ model }}
        window w as (partition by id, tf, period order by ts)
    )

    select *
    from ordered
    where
        (prev_ema is not null and d1_roll is distinct from ema - prev_ema)
        or (prev_d1_roll is not null and d2_roll is distinct from d1_roll - prev_d1_roll)
{% endtest %}
