{#- The EMA operator shared by every EMA family (emas.md §1.2, §8), created in the target schema
    on every dbt invocation (on-run-start; idempotent): type ema_state, the alpha helpers, the
    NumPy-compatible pairwise sum of the SMA seed and ema_walk, a plpgsql set-returning function
    that walks one (id, tf) spine once per period and emits every period's rows with their
    derivatives. ema_walk(mode 'preview' | 'daily' | 'dual', ...): see the comment above it. -#}
{% macro create_ema_operator() %}
{%- set s = target.schema -%}
-- =============================================================================
-- barsmith EMA prototype -- shared operator (emas.md §1, §8)
--
-- Idempotent: safe to run on every `dbt run` (on-run-start hook / macro).
-- Objects:
--   type     {{ s }}.ema_state                 resume state of one (id, tf, period) series
--   function {{ s }}.ema_alpha_bar(p)          2/(p+1)
--   function {{ s }}.ema_alpha_horizon(d, p)   2/(d*p+1)
--   function {{ s }}.ema_alpha_daily_eq(d, p)  1-(1-2/(p+1))^(1/d)
--   function {{ s }}.ema_require(v, msg)       v, or raise if v is null (mandatory lookups)
--   function {{ s }}.ema_pairwise_sum(v, lo, n) NumPy-compatible pairwise sum (seed mean)
--   function {{ s }}.ema_walk(...)             the seeded EMA operator S(y;n) + family variants
-- =============================================================================

-- ---------------------------------------------------------------------------
-- Resume state of one series (one row per id, tf, period).  Everything the
-- walk needs to continue after `last_day` with bit-identical results.
-- (A changed definition needs `drop type {{ s }}.ema_state cascade` first.)
-- ---------------------------------------------------------------------------
do $$
begin
  create type {{ s }}.ema_state as (
    last_day    date,      -- last spine day consumed; a resumed walk skips days/closes <= last_day
    run_vals    float8[],  -- before the seed: the current run of non-null inputs (seed window so far)
    e           float8,    -- S value: bar EMA (preview/dual) or daily EMA (daily); null = not seeded
    e_star      float8,    -- preview: bar EMA of the last canonical close that had a spine row
    ema         float8,    -- last emitted ema
    ema_bar     float8,    -- last emitted ema_bar (dual)
    d1_roll     float8,    -- last emitted d1_roll
    d1_roll_bar float8,    -- last emitted d1_roll_bar (dual)
    c_ema       float8,    -- ema on the last emitted roll = false row
    c_d1        float8,    -- d1  on the last emitted roll = false row
    c_ema_bar   float8,    -- ema_bar on the last emitted roll_bar = false row (dual)
    c_d1_bar    float8     -- d1_bar  on the last emitted roll_bar = false row (dual)
  );
exception when duplicate_object then null;
end $$;

-- ---------------------------------------------------------------------------
-- Alpha formulas (emas.md §1.1).  Plain SQL, inlined by the planner.
-- ---------------------------------------------------------------------------
create or replace function {{ s }}.ema_alpha_bar(p integer) returns float8
  language sql immutable parallel safe
  as $$ select 2.0::float8 / (p + 1) $$;

create or replace function {{ s }}.ema_alpha_horizon(tf_days integer, p integer) returns float8
  language sql immutable parallel safe
  as $$ select 2.0::float8 / (tf_days::float8 * p + 1) $$;

create or replace function {{ s }}.ema_alpha_daily_eq(tf_days integer, p integer) returns float8
  language sql immutable parallel safe
  as $$ select 1.0::float8 - power(1.0::float8 - 2.0::float8 / (p + 1), 1.0::float8 / tf_days) $$;

-- Returns v, or raises when v is null (makes the alpha lookup mandatory, OP-7).
create or replace function {{ s }}.ema_require(v float8, msg text) returns float8
  language plpgsql immutable parallel safe
  as $$ begin if v is null then raise exception 'ema: %', msg; end if; return v; end $$;

-- ---------------------------------------------------------------------------
-- Sum of v[lo .. lo+n-1] in NumPy's pairwise order (blocks of <= 128 summed with
-- 8 interleaved accumulators, larger ranges split in halves that are multiples
-- of 8).  The SMA seed is {{ s }}.ema_pairwise_sum(window) / n, which reproduces the
-- reference's np.mean bit for bit (a plain left-to-right sum differs in the
-- last bits for about half of the seeds).
-- ---------------------------------------------------------------------------
create or replace function {{ s }}.ema_pairwise_sum(v float8[], lo integer default 1, n integer default null)
returns float8
language plpgsql immutable parallel safe
as $$
declare
  r0 float8; r1 float8; r2 float8; r3 float8; r4 float8; r5 float8; r6 float8; r7 float8;
  res float8; i integer; n2 integer;
begin
  n := coalesce(n, cardinality(v) - lo + 1);
  if n < 8 then
    res := '-0'::float8;
    for i in lo .. lo + n - 1 loop res := res + v[i]; end loop;
    return res;
  elsif n <= 128 then
    r0 := v[lo];     r1 := v[lo + 1]; r2 := v[lo + 2]; r3 := v[lo + 3];
    r4 := v[lo + 4]; r5 := v[lo + 5]; r6 := v[lo + 6]; r7 := v[lo + 7];
    i := 8;
    while i < n - (n % 8) loop
      r0 := r0 + v[lo + i];     r1 := r1 + v[lo + i + 1]; r2 := r2 + v[lo + i + 2]; r3 := r3 + v[lo + i + 3];
      r4 := r4 + v[lo + i + 4]; r5 := r5 + v[lo + i + 5]; r6 := r6 + v[lo + i + 6]; r7 := r7 + v[lo + i + 7];
      i := i + 8;
    end loop;
    res := ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7));
    while i < n loop res := res + v[lo + i]; i := i + 1; end loop;
    return res;
  else
    n2 := n / 2;
    n2 := n2 - n2 % 8;
    return {{ s }}.ema_pairwise_sum(v, lo, n2) + {{ s }}.ema_pairwise_sum(v, lo + n2, n - n2);
  end if;
end
$$;

-- ---------------------------------------------------------------------------
-- {{ s }}.ema_walk: walks the daily spine of ONE (id, tf) once per requested period and
-- emits every period's rows (long form: one row per period and spine day).
--
-- Seeded operator S(y; n) (emas.md §1.2), applied to the bar closes (modes
-- 'preview' and 'dual') or to the daily closes (mode 'daily'):
--   seed at the first index where the last n inputs are all non-null, value =
--   their mean (pairwise sum / n, see above); afterwards e := a*y + (1-a)*e, a
--   null input carries e forward; nothing is defined before the seed.
--
-- Modes (per period j: window n = p_n[j], recursion alpha a = p_alpha[j],
-- daily alpha ad = p_alpha_d[j]):
--   'preview' (multi_tf, §2.2): E = S(B; n).  Canonical spine day with defined
--       E -> ema = E, roll = false.  Other days -> one-step preview
--       ema = ad*x + (1-ad)*E*, E* = E of the last canonical close that had a
--       spine row; roll = true.  Rows before the first defined value are not
--       emitted.  (multi_tf passes ad = alpha_bar.)
--   'daily'   (v2, §3.2): ema = S(x; n) over the daily closes, emitted from the
--       seed row; roll = false iff (pos+1) % p_roll_every = 0 (pos = 0-based
--       spine position; pos of p_day[1] = p_pos0).
--   'dual'    (cal §4.2, cal_anchor §5.2): E = S(B; n).  Starts on the first
--       canonical spine day with a defined E: ema = ema_bar = E.  Then ema_bar
--       snaps to E on canonical days and compounds ad*x + (1-ad)*ema_bar on the
--       others; ema compounds every day and never snaps.  roll = not canonical
--       (the caller writes roll_bar = roll).  Nothing before the start (OP-11).
--
-- Canonical closes are matched to spine days by date (OP-12).  A close whose
-- date has no spine row still updates E (bar-only event) but emits nothing and
-- (preview) does not move E*.  So do the closes dated before the first spine
-- day (history before ema_start_date, OP-22): E may seed there, and the first
-- row is the first canonical spine day (preview: E* is the E of a close on a
-- spine row, so no preview before it).  Closes dated after the last spine day
-- are not consumed (a later call picks them up), which keeps resuming exact.
--
-- Derivatives (§1.3) over the emitted rows: d1_roll/d2_roll over all rows,
-- d1/d2 over roll = false rows; the *_bar ones likewise on ema_bar (dual).
--
-- Resume: p_state[j] (aligned with p_period) continues series j after
-- p_state[j].last_day: spine days and closes on or before that day are skipped
-- and every value comes from the same operations as in a full walk, so the
-- output is bit-identical to a full computation.  A null state starts from
-- scratch.
--
-- Inputs must be ascending and unique by day.  A period that cannot seed emits
-- nothing (OP-19); callers should drop such periods up front to save the walk.
-- ---------------------------------------------------------------------------
create or replace function {{ s }}.ema_walk(
    p_mode       text,                       -- 'preview' | 'daily' | 'dual'
    p_day        date[],                     -- spine: UTC date of each daily row
    p_ts         timestamptz[],              -- spine: ts written to the output
    p_x          float8[],                   -- spine: daily close
    p_bar_day    date[],                     -- canonical closes: UTC date of time_close
    p_bar_close  float8[],                   -- canonical closes: B_k
    p_period     integer[],                  -- period label of each series
    p_n          integer[],                  -- seed window (p; tf_days*p in v2)
    p_alpha      float8[],                   -- recursion alpha (2/(n+1))
    p_alpha_d    float8[],                   -- preview / daily alpha
    p_roll_every integer     default null,   -- 'daily' only
    p_pos0       integer     default 0,      -- 'daily' only
    p_state      {{ s }}.ema_state[] default null    -- per-period resume state (nullable)
) returns table (
    period      integer,
    ts          timestamptz,
    roll        boolean,
    ema         float8,
    d1_roll     float8,
    d2_roll     float8,
    d1          float8,
    d2          float8,
    ema_bar     float8,
    d1_roll_bar float8,
    d2_roll_bar float8,
    d1_bar      float8,
    d2_bar      float8
)
language plpgsql immutable parallel safe
rows 2000
as $fn$
-- Implementation notes.  The output variables double as the "previous row"
-- memory: after RETURN NEXT, ema / d1_roll / ema_bar / d1_roll_bar still hold
-- the last emitted row, so a new row does d2_roll := (v - ema) - d1_roll;
-- d1_roll := v - ema; ema := v (same float operations as d1_roll_t - d1_roll_{t-1}).
-- Each mode has a seeding phase (nothing emitted), a start phase (up to the first
-- emitted row) and a tight main loop, to keep the per-row statement count low.
declare
  v_mode   smallint := case p_mode when 'preview' then 1 when 'daily' then 2 when 'dual' then 3 end;
  nd       integer  := coalesce(cardinality(p_day), 0);
  nb       integer  := coalesce(cardinality(p_bar_day), 0);
  j integer; i integer; s integer; k integer; i0 integer; lo integer; hi integer; mid integer;
  n integer; a float8; oa float8; ad float8; oad float8;
  st {{ s }}.ema_state;
  skip_day date;      -- days / closes <= skip_day were consumed by an earlier call
  last_day date;      -- last spine day of this call (null: none)
  run_len integer; run_pref float8[]; run_from integer;   -- pre-seed run
  e float8; e_star float8; v float8; vb float8; x float8; b float8;
  c_ema float8; c_d1 float8; c_emab float8; c_d1b float8;   -- last roll = false row
  d date; lastbar date; nextbar date;
begin
  if v_mode is null then
    raise exception '{{ s }}.ema_walk: unknown mode %', p_mode;
  end if;

  for j in 1 .. coalesce(cardinality(p_period), 0) loop
    period := p_period[j];
    n  := p_n[j];
    a  := p_alpha[j];   oa  := 1.0::float8 - a;
    ad := p_alpha_d[j]; oad := 1.0::float8 - ad;

    ---------------------------------------------- load resume state (or start fresh)
    st := case when p_state is null then null else p_state[j] end;
    if st is null then
      skip_day := '-infinity'; run_pref := '{}';
      e := null; e_star := null; ema := null; ema_bar := null; d1_roll := null; d1_roll_bar := null;
      c_ema := null; c_d1 := null; c_emab := null; c_d1b := null;
    else
      skip_day := coalesce(st.last_day, '-infinity'::date);
      run_pref := coalesce(st.run_vals, '{}');
      e := st.e; e_star := st.e_star; ema := st.ema; ema_bar := st.ema_bar;
      d1_roll := st.d1_roll; d1_roll_bar := st.d1_roll_bar;
      c_ema := st.c_ema; c_d1 := st.c_d1; c_emab := st.c_ema_bar; c_d1b := st.c_d1_bar;
    end if;
    run_len := cardinality(run_pref);
    roll := true; d1 := null; d2 := null; d2_roll := null; d1_bar := null; d2_bar := null;
    d2_roll_bar := null;

    ------------- skip what the state covers (binary search; inputs ascending)
    lo := 1; hi := nd + 1;
    while lo < hi loop
      mid := (lo + hi) / 2;
      if p_day[mid] <= skip_day then lo := mid + 1; else hi := mid; end if;
    end loop;
    i0 := lo;
    lo := 1; hi := nb + 1;
    if v_mode <> 2 then
      while lo < hi loop
        mid := (lo + hi) / 2;
        if p_bar_day[mid] <= skip_day then lo := mid + 1; else hi := mid; end if;
      end loop;
    end if;
    k := lo;
    run_from := case when v_mode = 2 then i0 else k end;
    last_day := case when nd >= i0 then p_day[nd] end;
    i := i0;

    if v_mode = 2 then
      --================================================== daily (v2): S(x; n)
      if e is null then                                  -- seeding
        while i <= nd loop
          x := p_x[i];
          if x is null then
            run_len := 0; run_pref := '{}'; run_from := i + 1;
          else
            run_len := run_len + 1;
            if run_len = n then
              e := {{ s }}.ema_pairwise_sum(run_pref || p_x[run_from:i]) / n;
              exit;                                      -- row i is the seed row
            end if;
          end if;
          i := i + 1;
        end loop;
      elsif i <= nd then
        e := coalesce(a * p_x[i] + oa * e, e);           -- resumed: first new row
      end if;
      if e is not null and i <= nd then
        for s in i .. nd loop
          if s > i then
            e := coalesce(a * p_x[s] + oa * e, e);       -- null close: carry forward
          end if;
          ts := p_ts[s];
          roll := ((p_pos0 + s) % p_roll_every) <> 0;    -- (pos + 1) % d, pos = p_pos0 + s - 1
          d2_roll := (e - ema) - d1_roll;
          d1_roll := e - ema;
          ema := e;
          if roll then
            return next;
          else
            d1 := e - c_ema; d2 := d1 - c_d1; c_ema := e; c_d1 := d1;
            return next;
            d1 := null; d2 := null;
          end if;
        end loop;
      end if;

    else
      --================================ bar modes: E = S(B; n) over the closes
      lastbar := '-infinity';
      if e is null then            -- seeding phase: closes only (dated <= last spine day)
        while k <= nb and p_bar_day[k] <= last_day loop
          b := p_bar_close[k];
          if b is null then
            run_len := 0; run_pref := '{}'; run_from := k + 1;
          else
            run_len := run_len + 1;
            if run_len = n then
              e := {{ s }}.ema_pairwise_sum(run_pref || p_bar_close[run_from:k]) / n;
            end if;
          end if;
          lastbar := p_bar_day[k];
          k := k + 1;
          exit when e is not null;
        end loop;
        if e is not null then      -- nothing before the seeding close's day
          lo := i0; hi := nd + 1;
          while lo < hi loop
            mid := (lo + hi) / 2;
            if p_day[mid] < lastbar then lo := mid + 1; else hi := mid; end if;
          end loop;
          i := lo;
        end if;
      end if;

      if e is not null and i <= nd then
        nextbar := case when k <= nb then p_bar_day[k] else 'infinity'::date end;

        if v_mode = 1 then
          --========================================== preview (multi_tf)
          -- start phase: until the first canonical spine day (defines E*)
          while e_star is null and i <= nd loop
            d := p_day[i];
            while nextbar <= d loop                      -- closes up to this day
              b := p_bar_close[k];
              if b is not null then e := a * b + oa * e; end if;
              lastbar := nextbar; k := k + 1;
              nextbar := case when k <= nb then p_bar_day[k] else 'infinity'::date end;
            end loop;
            if lastbar = d then                          -- canonical: ema = E
              e_star := e;
              d2_roll := (e - ema) - d1_roll; d1_roll := e - ema; ema := e;
              d1 := e - c_ema; d2 := d1 - c_d1; c_ema := e; c_d1 := d1;
              roll := false; ts := p_ts[i];
              return next;
              roll := true; d1 := null; d2 := null;
            end if;
            i := i + 1;
          end loop;
          -- main loop (E* defined)
          for s in i .. nd loop
            if nextbar <= p_day[s] then
              d := p_day[s];
              loop                                       -- closes up to this day
                b := p_bar_close[k];
                if b is not null then e := a * b + oa * e; end if;
                lastbar := nextbar; k := k + 1;
                nextbar := case when k <= nb then p_bar_day[k] else 'infinity'::date end;
                exit when nextbar > d;
              end loop;
              if lastbar = d then                        -- canonical: ema = E
                e_star := e;
                d2_roll := (e - ema) - d1_roll; d1_roll := e - ema; ema := e;
                d1 := e - c_ema; d2 := d1 - c_d1; c_ema := e; c_d1 := d1;
                roll := false; ts := p_ts[s];
                return next;
                roll := true; d1 := null; d2 := null;
                continue;
              end if;                                    -- else: close(s) without spine row
            end if;
            v := ad * p_x[s] + oad * e_star;             -- one-step preview
            continue when v is null;                     -- null close: not emitted
            d2_roll := (v - ema) - d1_roll; d1_roll := v - ema; ema := v;
            ts := p_ts[s];
            return next;
          end loop;

        else
          --====================================== dual (cal, cal_anchor)
          -- start phase: until the first canonical spine day (ema = ema_bar = E)
          while ema_bar is null and i <= nd loop
            d := p_day[i];
            while nextbar <= d loop
              b := p_bar_close[k];
              if b is not null then e := a * b + oa * e; end if;
              lastbar := nextbar; k := k + 1;
              nextbar := case when k <= nb then p_bar_day[k] else 'infinity'::date end;
            end loop;
            if lastbar = d then
              d2_roll_bar := (e - ema_bar) - d1_roll_bar; d1_roll_bar := e - ema_bar; ema_bar := e;
              d1_bar := e - c_emab; d2_bar := d1_bar - c_d1b; c_emab := e; c_d1b := d1_bar;
              d2_roll := (e - ema) - d1_roll; d1_roll := e - ema; ema := e;
              d1 := e - c_ema; d2 := d1 - c_d1; c_ema := e; c_d1 := d1;
              roll := false; ts := p_ts[i];
              return next;
              roll := true; d1 := null; d2 := null; d1_bar := null; d2_bar := null;
            end if;
            i := i + 1;
          end loop;
          -- main loop (started)
          for s in i .. nd loop
            x := p_x[s];
            if nextbar <= p_day[s] then
              d := p_day[s];
              loop
                b := p_bar_close[k];
                if b is not null then e := a * b + oa * e; end if;
                lastbar := nextbar; k := k + 1;
                nextbar := case when k <= nb then p_bar_day[k] else 'infinity'::date end;
                exit when nextbar > d;
              end loop;
              if lastbar = d then                        -- canonical: ema_bar snaps to E
                v := coalesce(ad * x + oad * ema, ema);
                d2_roll_bar := (e - ema_bar) - d1_roll_bar; d1_roll_bar := e - ema_bar; ema_bar := e;
                d1_bar := e - c_emab; d2_bar := d1_bar - c_d1b; c_emab := e; c_d1b := d1_bar;
                d2_roll := (v - ema) - d1_roll; d1_roll := v - ema; ema := v;
                d1 := v - c_ema; d2 := d1 - c_d1; c_ema := v; c_d1 := d1;
                roll := false; ts := p_ts[s];
                return next;
                roll := true; d1 := null; d2 := null; d1_bar := null; d2_bar := null;
                continue;
              end if;
            end if;
            vb := coalesce(ad * x + oad * ema_bar, ema_bar);   -- preview compounds daily
            v  := coalesce(ad * x + oad * ema, ema);           -- daily path, never snaps
            d2_roll_bar := (vb - ema_bar) - d1_roll_bar; d1_roll_bar := vb - ema_bar; ema_bar := vb;
            d2_roll := (v - ema) - d1_roll; d1_roll := v - ema; ema := v;
            ts := p_ts[s];
            return next;
          end loop;
        end if;
      end if;
    end if;

  end loop;
end
$fn$;

-- earlier signatures (until 2026-12: a final-state row per series, a per-row state keeper)
drop function if exists {{ s }}.ema_keep_state(text, integer, text, integer, timestamptz, {{ s }}.ema_state, boolean);
drop function if exists {{ s }}.ema_walk(text, date[], timestamptz[], float8[], date[], float8[], integer[], integer[],
    float8[], float8[], integer, integer, {{ s }}.ema_state[], boolean);

-- EMA extension bookkeeping (macros/emas/ema_closes.sql; a dbt source, models/bookkeeping)
create table if not exists {{ s }}.barsmith_ema_close_counts (
    model text not null,
    id integer not null,
    tf text not null,
    n_closes bigint not null,
    counted_through date not null,
    primary key (model, id, tf)
);

-- ema_rejects extension bookkeeping (macros/emas/ema_rejects.sql; a dbt source, models/bookkeeping):
-- per EMA model and series, the window rule 5 reads next (its last 100 values, null where not
-- finite, oldest first, and their exact sums)
create table if not exists {{ s }}.barsmith_ema_stat_windows (
    model text not null,
    id integer not null,
    tf text not null,
    period integer not null,
    last_ts timestamptz not null,
    vals float8[] not null,
    s1 numeric not null,
    s2 numeric not null,
    n integer not null,
    primary key (model, id, tf, period)
);

{% endmacro %}
