{#- The EMA extension of barsmith_incremental (docs/architecture.md): the config every EMA model
    shares and the hook points the materialization calls for it (extension = 'ema').

    Config key `ema`: {'walk': 'preview' | 'daily' | 'dual' (the ema_walk mode, macros/emas/ema_operator.sql),
                       'closes': 'rolling' | 'calendar' | 'anchored' | none (where the bar closes
                       come from, macros/emas/ema_closes.sql), 'bars': the bar model, 'v2': bool}.
    Hooks:
      ema_signature()       what every row depends on besides the 1D bars: the timeframes and
                            their tf_days, the periods, ema_start_date, ema_min_obs_multiplier
      ema_prepare()         the close counts of the run's ids (series existence); on a full
                            build the work tables its parallel walks read
      ema_written()         the new close counts
      ema_finish()          drops a full build's work tables
      ema_series_match()    the target rows of the series a filtered run recomputes -#}

{% macro ema_config(timeframes, walk, bars=none, closes=none, v2=false, tags=[]) %}
    {{ barsmith_config(
        input={'model': 'price_bars_1d', 'ts': 'timestamp', 'changed_at': 'src_load_ts'},
        timeframes=timeframes,
        waits_for=['int_bars_daily_prep', bars] if bars else [],
        defer_stale_ids=true,
        partial_when=['timeframes', 'ema_periods', 'tf_period_combos'],
        range_column='ts',
        unique_key=['id', 'tf', 'period', 'ts'],
        table_indexes=[
            {'name': 'key', 'columns': ['id', 'tf', 'period', 'ts'], 'unique': true},
            {'name': 'canonical', 'columns': ['id', 'tf', 'period', 'ts'], 'unique': true, 'where': 'not roll'},
        ],
        change_grain=['id', 'tf', 'period'],
        keep_changes_until_consumed=true,
        audit_counts={'canonical': 'not roll'},
        extension='ema',
        ema={'walk': walk, 'bars': bars, 'closes': closes, 'v2': v2},
        tags=tags,
    ) }}
    {%- if closes -%}{%- do source('barsmith', 'barsmith_ema_close_counts') -%}{%- endif -%}
{% endmacro %}

{% macro ema_settings(node_config=none) -%}
    {%- set cfg = node_config or config -%}
    {%- set settings = cfg.get('ema') -%}
    {{ return(settings if settings is mapping else {'walk': none, 'bars': none, 'closes': none, 'v2': false}) }}
{%- endmacro %}

{# The periods of a family: var('ema_periods') when given, else the seed (v2: its defaults). #}
{% macro ema_periods_array(v2=false) -%}
    {%- set given = int_list(list_var('ema_periods')) -%}
    {%- if given | length > 0 -%}
        array[{{ given | join(', ') }}]::integer[]
    {%- else -%}
        (select array_agg(period order by period) from {{ ref('ema_periods') }}
         {%- if v2 %} where is_v2_default{% endif %})
    {%- endif -%}
{%- endmacro %}

{# Restriction to var('tf_period_combos') (list of {tf, period}); `true` when empty. #}
{% macro ema_combo_filter(tf_column, period_column) -%}
    {%- set combos = list_var('tf_period_combos') -%}
    {%- if combos | length > 0 -%}
        ({{ tf_column }}, {{ period_column }}) in (
            {%- for c in combos %}({{ sql_string(c['tf']) }}, {{ c['period'] | int }}){% if not loop.last %}, {% endif %}{% endfor -%}
        )
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{# The timeframes of the model with their EMA tf_days (tf_days_nominal: emas.md OP-6, OP-7). #}
{% macro ema_timeframes(node_config=none) -%}
    {{ barsmith_timeframes(node_config, columns="tf, tf_days_nominal as tf_days") }}
{%- endmacro %}

{#- Hook `signature` (SQL text, md5'd by the materialization): everything the rows depend on
    besides the 1D bars: the timeframes, the periods, the spine start (not v2's, whose spine is
    never clipped, OP-22), the minimum-observation multiplier, and the semantics version 'op22'
    (tables built before OP-22's amendment clipped the closes at the start date: rebuilt once). -#}
{% macro ema_signature(node_config=none) -%}
    {%- set v2 = ema_settings(node_config)['v2'] -%}
    coalesce((select string_agg(tf || ':' || tf_days, ',' order by tf) from ({{ ema_timeframes(node_config) }}) as x), '')
    || '|' || {{ ema_periods_array(v2) }}::text
    || '|' || {{ sql_string('' if v2 else ema_start_date() | trim) }}
    || '|' || {{ var('ema_min_obs_multiplier', 1) | int }}
    || '|op22'
{%- endmacro %}

{# Hook `series_match`: target rows (alias t) of the series a filtered run recomputes. #}
{% macro ema_series_match() -%}
    {%- set tfs = list_var('timeframes') -%}
    {%- set periods = int_list(list_var('ema_periods')) -%}
    {%- if tfs | length > 0 %}t.tf in ({% for tf in tfs %}{{ sql_string(tf) }}{% if not loop.last %}, {% endif %}{% endfor %}){% else %}true{% endif %}
    {%- if periods | length > 0 %} and t.period in ({{ periods | join(', ') }}){% endif %}
    {%- if list_var('tf_period_combos') | length > 0 %} and {{ ema_combo_filter('t.tf', 't.period') }}{% endif %}
{%- endmacro %}

{# The CTEs the model's walks read (macros/emas/ema_inputs.sql), by walk kind. #}
{% macro ema_inputs() %}
    {%- set ema = ema_settings() -%}
    {%- if ema['walk'] == 'preview' -%}
        {{ ema_multi_tf_inputs() }}
    {%- elif ema['walk'] == 'daily' -%}
        {{ ema_v2_inputs() }}
    {%- else -%}
        {{ ema_calendar_inputs(config.get('timeframes')['scheme'], ema['closes'] == 'anchored') }}
    {%- endif -%}
{% endmacro %}

{#- Hook `prepare`: close counts (bar families), then a full build's work tables (on Citus an
    incremental run's resume states, macros/citus/emas.sql). -#}
{% macro ema_prepare(full_build) %}
    {%- set ema = ema_settings() -%}
    {% if ema['closes'] %}
        {{ ema_prepare_closes(ema['closes'], ema['bars']) }}
    {% endif %}
    {% if full_build %}
        {{ ema_prepare_walk_tables(ema_inputs()) }}
    {% elif var('barsmith_engine', 'postgres') == 'citus' %}
        {{ barsmith_dispatch('ema_prepare_series_state')() }}
    {% endif %}
{% endmacro %}

{# Hook `written`: the close counts of the run's ids replace their stored ones. #}
{% macro ema_written(new_rows, full_build) %}
    {% if ema_settings()['closes'] %}
        {{ ema_record_closes() }}
    {% endif %}
{% endmacro %}

{# Hook `finish`: a full build's work tables go (they vanish with a failed transaction anyway). #}
{% macro ema_finish(full_build) %}
    {% if full_build %}
        drop table {{ ema_walk_relation('calls') }}, {{ ema_walk_relation('spine') }};
    {% endif %}
{% endmacro %}
