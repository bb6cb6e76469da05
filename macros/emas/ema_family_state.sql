{#- The _state view of an EMA table (emas.md §6.1; OP-15 decision: derived from the target, never
    maintained separately): one row per (id, tf, period) that has a canonical row in the EMA table
    and rows for (id, tf) in the family's bar table (the inner joins of §6.2, so multi_tf's 1D
    series and v2's non-1D series have no state row, as in the reference).
      last_canonical_ts = last_time_close: newest ts with the family's canonical flag false;
      daily_min_seen / daily_max_seen: min(time_open) / max(time_close) of the (id, tf) bars;
      last_bar_seq: newest bar_seq of a completed bar (is_partial_end false);
      updated_at: when that canonical row was written (its ingested_at), the view's stand-in
      for the reference's time of the state refresh.
    A filter on id (or id and tf) reaches both aggregates, so one id's state reads one id. -#}
{% macro ema_family_state(ema_model, bar_model, canonical_flag) %}
    with canonical as (
        select
            id::integer as id,
            tf,
            period,
            max(ts) as last_canonical_ts,
            max(ingested_at) as updated_at
        from {{ ref(ema_model) }}
        where not {{ canonical_flag }}
        group by id, tf, period
    ),

    bars as (
        select
            id,
            tf,
            min(time_open) as daily_min_seen,
            max(time_close) as daily_max_seen,
            max(bar_seq) filter (where not is_partial_end) as last_bar_seq
        from {{ ref(bar_model) }}
        group by id, tf
    )

    select
        c.id,
        c.tf,
        c.period,
        b.daily_min_seen,
        b.daily_max_seen,
        c.last_canonical_ts as last_time_close,
        c.last_canonical_ts,
        b.last_bar_seq,
        c.updated_at
    from canonical as c
    inner join bars as b on c.id = b.id and c.tf = b.tf
{% endmacro %}
