{#- barsmith_incremental: the one materialization of barsmith's tables (docs/architecture.md).

    A model declares what it reads and how its rows are keyed; the materialization owns the run,
    in one transaction, in this order:
      1. ranges     what changed in the input since the last run (macros/materialization/ranges.sql)
      2. prepare    the extension's step before the build (e.g. EMA close counts, walk tables)
      3. build      full: create the table from the model's SELECT, then its indexes;
                    incremental: the SELECT (which reads only the ranges) into a temp table, then
                    replace: delete the target rows of the ranges, insert the new rows
      4. written    the extension's step after the rows are written
      5. record     fingerprints of the input consumed, the changes written, the run log
      6. indexes    create any declared index that is missing; analyze after a full build
      7. finish     the extension's step at the end (e.g. drop work tables)

    Model config (barsmith_config() sets materialized and registers the bookkeeping sources):
      input          {'model': <ref name>, 'ts': <instant column>, 'changed_at': <change marker>}
      parts          'timeframe': one range part per timeframe (bar families); default one per id
      timeframes     {'family': <dim_timeframe.family or a list>, 'scheme': 'US' | 'ISO'}
      signature_vars vars whose values the rows depend on (a change rebuilds everything)
      waits_for      upstream models that must have consumed an id's input before this model reads it
      defer_stale_ids  the freshness gate: ids with no input newer than var staleness_hours wait
                     (incremental runs; var skip_stale_check: true turns it off)
      range_mode     'range' (default: recompute from the first changed instant), 'series' (any
                     change before the last seen instant rebuilds the id) or 'id' (any change does)
      lookback_days  instants before the last seen one that every run re-reads
      partial_when   vars that make a run compute a subset of a part (no fingerprints recorded)
      range_column   the target's instant column
      unique_key     the target's key; its first column is id
      table_indexes  [{'name', 'columns', 'unique', 'include', 'where'}]; the first is the unique key
      change_grain   key columns a change is recorded by in barsmith_changes (default ['id'])
      keep_changes_until_consumed  keep earlier runs' change rows until a consumer takes them
      audit_counts   {name: boolean SQL over the written rows}: quality counts in the run log
      extension      a family's hook macros: <extension>_prepare(), <extension>_written(new_rows,
                     full_build), <extension>_finish(full_build), <extension>_signature()
    The model's SQL reads barsmith_ranges() (temp table of step 1) when is_incremental(). -#}

{% materialization barsmith_incremental, default %}
    {%- set result = barsmith_dispatch('barsmith_materialize')() -%}
    {{ return(result) }}
{% endmaterialization %}

{#- dbt's is_incremental() accepts only materialized='incremental'; this one also accepts
    barsmith_incremental (the model SQL branches on it exactly like the materialization). -#}
{% macro is_incremental() %}
    {% if not execute %}
        {{ return(false) }}
    {% endif %}
    {% set relation = adapter.get_relation(this.database, this.schema, this.table) %}
    {{ return(relation is not none and relation.type == 'table'
              and model.config.materialized in ('incremental', 'barsmith_incremental')
              and not should_full_refresh()) }}
{% endmacro %}
