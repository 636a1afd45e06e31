"""The metric definitions of docs/metrics.md as DuckDB SQL, run in order.

Money is carried as exact integer pico-units (1e-12) of the reporting currency (HUGEINT) and
published as DECIMAL(38, 9); ratios are DOUBLE and NULL when their denominator is zero. Inputs
are the warehouse's aggregates of one window (`models.reads.QUERIES`: sessions, host changes,
usage priced per session and day, gifts, orders and refunds per day and session, earnings per
creator, session and hour, purchases and failures per day) plus `prices` and `fx` from the
cost model.
"""

MACROS = """
CREATE OR REPLACE MACRO money(p) AS
  CAST(CAST(p AS DECIMAL(38, 0)) * CAST(0.000000000001 AS DECIMAL(38, 12)) AS DECIMAL(38, 9));
CREATE OR REPLACE MACRO ratio(a, b) AS CAST(a AS DOUBLE) / NULLIF(CAST(b AS DOUBLE), 0);
CREATE OR REPLACE MACRO micros(a, b) AS epoch_us(b) - epoch_us(a);
CREATE OR REPLACE MACRO week_of(t) AS CAST(date_trunc('week', t) AS DATE);
"""

# Sessions, presence and live time, split by UTC hour (live hours need the hour grain).
LIVE_TIME = """
CREATE OR REPLACE TEMP TABLE sessions AS
SELECT s.session_id, CAST(s.started_at AS TIMESTAMP) AS started_at, s.creator_ids,
       CAST(e.ended_at AS TIMESTAMP) AS ended_at,
       CAST(COALESCE(e.ended_at, u.last_usage_end) AS TIMESTAMP) AS live_until
FROM started s
LEFT JOIN ended e USING (session_id)
LEFT JOIN (SELECT session_id, max(last_usage_end) AS last_usage_end FROM usage GROUP BY 1) u
  USING (session_id);

CREATE OR REPLACE TEMP TABLE presence AS
WITH marks AS (
  SELECT session_id, unnest(creator_ids) AS creator_id, started_at AS ts, 'join' AS kind
  FROM sessions
  UNION ALL
  SELECT session_id, creator_id, CAST(ts AS TIMESTAMP), kind FROM host_changes
), ordered AS (
  SELECT *, lead(ts) OVER (PARTITION BY session_id, creator_id ORDER BY ts, kind DESC) AS next_at
  FROM marks
)
SELECT o.session_id, o.creator_id,
       greatest(o.ts, s.started_at) AS present_from,
       least(COALESCE(o.next_at, s.live_until), s.live_until) AS present_until
FROM ordered o JOIN sessions s USING (session_id)
WHERE o.kind = 'join' AND s.live_until IS NOT NULL
  AND least(COALESCE(o.next_at, s.live_until), s.live_until) > greatest(o.ts, s.started_at);

CREATE OR REPLACE TEMP TABLE presence_hours AS
SELECT session_id, creator_id, hour,
       micros(greatest(present_from, hour), least(present_until, hour + INTERVAL 1 HOUR)) AS us
FROM (SELECT *, unnest(range(date_trunc('hour', present_from), present_until, INTERVAL 1 HOUR))
        AS hour FROM presence);

CREATE OR REPLACE TEMP TABLE session_hours AS
SELECT session_id, hour,
       micros(greatest(started_at, hour), least(live_until, hour + INTERVAL 1 HOUR)) AS us
FROM (SELECT *, unnest(range(date_trunc('hour', started_at), live_until, INTERVAL 1 HOUR))
        AS hour FROM sessions WHERE live_until > started_at);

CREATE OR REPLACE TEMP TABLE session_days AS
SELECT session_id, CAST(hour AS DATE) AS day, sum(us) AS us FROM session_hours GROUP BY ALL;
"""

# Infra cost: usage priced per interval by the warehouse (per session and day), the fixed cost
# of each day shared by the sessions live that day in proportion to live time.
USAGE_COST = """
CREATE OR REPLACE TEMP TABLE usage_cost AS
SELECT session_id, CAST(day AS DATE) AS day, CAST(viewer_us AS HUGEINT) AS viewer_us,
  CAST(publish_cost AS HUGEINT) AS publish_cost, CAST(delivery_cost AS HUGEINT) AS delivery_cost,
  CAST(transcode_cost AS HUGEINT) AS transcode_cost, CAST(relay_cost AS HUGEINT) AS relay_cost,
  CAST(egress_cost AS HUGEINT) AS egress_cost, CAST(recording_cost AS HUGEINT) AS recording_cost
FROM usage;

CREATE OR REPLACE TEMP TABLE days AS
WITH bounds AS (
  SELECT min(d) AS lo, max(d) AS hi FROM (
    SELECT CAST(started_at AS DATE) AS d FROM sessions
    UNION ALL SELECT day FROM usage_cost
    UNION ALL SELECT CAST(day AS DATE) FROM gifts
    UNION ALL SELECT CAST(day AS DATE) FROM orders
    UNION ALL SELECT CAST(day AS DATE) FROM refunds
    UNION ALL SELECT CAST(day AS DATE) FROM purchases
    UNION ALL SELECT CAST(day AS DATE) FROM failures))
SELECT CAST(d AS DATE) AS day,
       p.fixed_monthly // day(last_day(CAST(d AS DATE))) AS fixed_cost
FROM bounds, unnest(range(CAST(lo AS TIMESTAMP), CAST(hi AS TIMESTAMP) + INTERVAL 1 DAY,
                          INTERVAL 1 DAY)) AS r(d), prices p
WHERE lo IS NOT NULL;

-- The fixed cost of a day, shared by the sessions live that day in proportion to live time.
CREATE OR REPLACE TEMP TABLE session_fixed AS
SELECT sd.session_id, sd.day,
       d.fixed_cost * sd.us // sum(sd.us) OVER (PARTITION BY sd.day) AS fixed_cost
FROM session_days sd JOIN days d USING (day);

CREATE OR REPLACE TEMP TABLE session_infra AS
SELECT session_id, sum(cost) AS infra_cost FROM (
  SELECT session_id, publish_cost + delivery_cost + transcode_cost + relay_cost + egress_cost
         + recording_cost AS cost FROM usage_cost
  UNION ALL SELECT session_id, fixed_cost FROM session_fixed)
GROUP BY session_id;
"""

# Money in reporting pico-units, each dated by the event that causes it: sums of minor units
# times the currency's exact pico-units per minor unit.
MONEY = """
CREATE OR REPLACE TEMP TABLE gift_money AS
SELECT CAST(g.day AS DATE) AS day, g.session_id, CAST(g.gifts AS HUGEINT) AS n,
       CAST(g.value_minor AS HUGEINT) * fx.pico AS value,
       CAST(g.platform_fee_minor AS HUGEINT) * fx.pico AS platform_fee
FROM gifts g JOIN fx USING (currency);

CREATE OR REPLACE TEMP TABLE order_money AS
SELECT CAST(o.day AS DATE) AS day, o.session_id, CAST(o.orders AS HUGEINT) AS n,
       CAST(o.gross_minor AS HUGEINT) * fx.pico AS gross,
       CAST(o.commission_minor AS HUGEINT) * fx.pico AS commission,
       CAST(o.creator_net_minor AS HUGEINT) * fx.pico AS creator_net
FROM orders o JOIN fx USING (currency);

-- Refunds of known orders only (an unknown order's refund takes nothing back yet).
CREATE OR REPLACE TEMP TABLE refund_money AS
SELECT CAST(r.day AS DATE) AS day, r.session_id,
       CAST(r.payment_fee_minor AS HUGEINT) * fx.pico AS payment_fee,
       CAST(r.commission_minor AS HUGEINT) * fx.pico AS commission,
       CAST(r.creator_net_minor AS HUGEINT) * fx.pico AS creator_net
FROM refunds r JOIN fx USING (currency);

-- Per creator, session (null for orders outside a live) and UTC hour: their earnings (gift
-- shares, order nets, less refunded nets), earning events and the first of them.
CREATE OR REPLACE TEMP TABLE earnings AS
SELECT e.creator_id, e.session_id, CAST(e.hour AS TIMESTAMP) AS hour,
       sum(CAST(e.amount_minor AS HUGEINT) * fx.pico) AS amount,
       CAST(sum(e.earning_events) AS BIGINT) AS earning_events,
       CAST(min(e.first_earning_at) AS TIMESTAMP) AS first_earning_at
FROM earnings_hourly e JOIN fx USING (currency)
GROUP BY ALL;
"""

PLATFORM_DAILY = """
CREATE OR REPLACE TEMP TABLE platform_daily AS
WITH live AS (SELECT day, sum(us) AS us FROM session_days GROUP BY day),
started AS (SELECT CAST(started_at AS DATE) AS day, count(*) AS n FROM sessions GROUP BY 1),
infra AS (
  SELECT day, sum(viewer_us) AS viewer_us, sum(publish_cost) AS publish_cost,
         sum(delivery_cost) AS delivery_cost, sum(transcode_cost) AS transcode_cost,
         sum(relay_cost) AS relay_cost, sum(egress_cost) AS egress_cost,
         sum(recording_cost) AS recording_cost
  FROM usage_cost GROUP BY day),
g AS (SELECT day, sum(n) AS n, sum(value) AS value, sum(platform_fee) AS platform_fee
      FROM gift_money GROUP BY 1),
o AS (SELECT day, sum(n) AS n, sum(gross) AS gross, sum(commission) AS commission,
             sum(creator_net) AS creator_net
      FROM order_money GROUP BY 1),
r AS (SELECT day, sum(payment_fee) AS payment_fee, sum(commission) AS commission,
             sum(creator_net) AS creator_net
      FROM refund_money GROUP BY 1),
cp AS (SELECT CAST(day AS DATE) AS day, sum(purchases) AS n,
              sum(CAST(payment_fee_minor AS HUGEINT) * fx.pico) AS payment_fee,
              sum(CAST(store_fee_minor AS HUGEINT) * fx.pico) AS store_fee
       FROM purchases JOIN fx USING (currency) GROUP BY 1),
f AS (SELECT CAST(day AS DATE) AS day, failed FROM failures),
parts AS (
  SELECT d.day,
    COALESCE(l.us, 0) / 60e6 AS live_minutes,
    COALESCE(i.viewer_us, 0) / 60e6 AS viewer_minutes,
    COALESCE(st.n, 0) AS sessions,
    COALESCE(i.publish_cost, 0) AS publish_cost, COALESCE(i.delivery_cost, 0) AS delivery_cost,
    COALESCE(i.transcode_cost, 0) AS transcode_cost, COALESCE(i.relay_cost, 0) AS relay_cost,
    COALESCE(i.egress_cost, 0) AS egress_cost, COALESCE(i.recording_cost, 0) AS recording_cost,
    d.fixed_cost,
    COALESCE(cp.n, 0) + COALESCE(g.n, 0) + COALESCE(o.n, 0) AS transactions,
    COALESCE(f.failed, 0) AS failed_transactions,
    COALESCE(cp.payment_fee, 0) AS payment_fees, COALESCE(cp.store_fee, 0) AS store_fees,
    (COALESCE(cp.n, 0) + COALESCE(g.n, 0) + COALESCE(o.n, 0)) * p.per_transaction
      AS per_transaction_fees,
    COALESCE(r.payment_fee, 0) AS refunded_payment_fees,
    COALESCE(g.value, 0) + COALESCE(o.gross, 0) AS gross_volume,
    COALESCE(g.platform_fee, 0) AS gift_platform_fees,
    COALESCE(o.commission, 0) AS order_commissions,
    COALESCE(r.commission, 0) AS refunded_commissions,
    COALESCE(g.value, 0) - COALESCE(g.platform_fee, 0) + COALESCE(o.creator_net, 0)
      - COALESCE(r.creator_net, 0) AS creator_earnings
  FROM days d CROSS JOIN prices p
  LEFT JOIN live l USING (day) LEFT JOIN started st USING (day) LEFT JOIN infra i USING (day)
  LEFT JOIN g USING (day) LEFT JOIN o USING (day) LEFT JOIN r USING (day)
  LEFT JOIN cp USING (day) LEFT JOIN f USING (day)
), published AS (
  -- Parts are rounded to the published precision first and totals are sums of the published
  -- parts, so the parts of every published figure add up to it exactly.
  SELECT day, live_minutes, viewer_minutes, sessions, transactions, failed_transactions,
    money(publish_cost) AS publish_cost, money(delivery_cost) AS delivery_cost,
    money(transcode_cost) AS transcode_cost, money(relay_cost) AS relay_cost,
    money(egress_cost) AS egress_cost, money(recording_cost) AS recording_cost,
    money(fixed_cost) AS fixed_cost,
    money(payment_fees) AS payment_fees, money(store_fees) AS store_fees,
    money(per_transaction_fees) AS per_transaction_fees,
    money(refunded_payment_fees) AS refunded_payment_fees,
    money(gift_platform_fees) AS gift_platform_fees,
    money(order_commissions) AS order_commissions,
    money(refunded_commissions) AS refunded_commissions,
    money(gross_volume) AS gross_volume, money(creator_earnings) AS creator_earnings
  FROM parts
), totals AS (
  SELECT *,
    publish_cost + delivery_cost + transcode_cost + relay_cost + egress_cost + recording_cost
      + fixed_cost AS infra_cost,
    payment_fees + store_fees + per_transaction_fees + refunded_payment_fees AS transaction_cost,
    gift_platform_fees + order_commissions - refunded_commissions AS platform_revenue
  FROM published
)
SELECT day, live_minutes, viewer_minutes, sessions,
  infra_cost,
  ratio(infra_cost, live_minutes) AS cost_per_live_minute,
  ratio(infra_cost, viewer_minutes) AS cost_per_viewer_minute,
  CAST(transactions AS BIGINT) AS transactions,
  CAST(failed_transactions AS BIGINT) AS failed_transactions,
  ratio(failed_transactions, transactions + failed_transactions) AS failure_rate,
  transaction_cost,
  ratio(transaction_cost, transactions) AS cost_per_transaction,
  gross_volume, platform_revenue, creator_earnings,
  platform_revenue - transaction_cost - infra_cost AS contribution,
  ratio(platform_revenue - transaction_cost - infra_cost, platform_revenue)
    AS contribution_margin,
  ratio(platform_revenue, gross_volume) AS take_rate,
  publish_cost, delivery_cost, transcode_cost, relay_cost, egress_cost, recording_cost,
  fixed_cost, payment_fees, store_fees, per_transaction_fees, refunded_payment_fees,
  gift_platform_fees, order_commissions, refunded_commissions
FROM totals ORDER BY day;
"""

SESSION_ECONOMICS = """
CREATE OR REPLACE TEMP TABLE session_economics AS
WITH hosts AS (
  -- In order of first presence; hosts present from the start keep their listed order (owner
  -- first).
  SELECT p.session_id,
         list(p.creator_id ORDER BY p.first_from, list_position(s.creator_ids, p.creator_id)
              NULLS LAST, p.creator_id) AS creator_ids
  FROM (SELECT session_id, creator_id, min(present_from) AS first_from
        FROM presence GROUP BY ALL) p JOIN sessions s USING (session_id)
  GROUP BY p.session_id),
viewing AS (SELECT session_id, sum(viewer_us) / 60e6 AS viewer_minutes
            FROM usage_cost GROUP BY 1),
g AS (SELECT session_id, sum(n) AS n, sum(value) AS value, sum(platform_fee) AS fee
      FROM gift_money GROUP BY 1),
o AS (SELECT session_id, sum(n) AS n, sum(gross) AS gross, sum(commission) AS commission,
             sum(creator_net) AS net FROM order_money WHERE session_id IS NOT NULL GROUP BY 1),
r AS (SELECT session_id, sum(payment_fee) AS payment_fee, sum(commission) AS commission,
             sum(creator_net) AS net FROM refund_money WHERE session_id IS NOT NULL GROUP BY 1),
m AS (
  SELECT s.session_id, COALESCE(h.creator_ids, s.creator_ids) AS creator_ids, s.started_at,
    s.ended_at,
    COALESCE(greatest(micros(s.started_at, s.live_until), 0), 0) / 60e6 AS live_minutes,
    COALESCE(v.viewer_minutes, 0) AS viewer_minutes,
    COALESCE(g.value, 0) + COALESCE(o.gross, 0) AS gross_volume,
    COALESCE(g.value, 0) - COALESCE(g.fee, 0) + COALESCE(o.net, 0) - COALESCE(r.net, 0)
      AS creator_earnings,
    COALESCE(g.fee, 0) + COALESCE(o.commission, 0) - COALESCE(r.commission, 0)
      AS platform_revenue,
    COALESCE(i.infra_cost, 0) AS infra_cost,
    (COALESCE(g.n, 0) + COALESCE(o.n, 0)) * p.per_transaction + COALESCE(r.payment_fee, 0)
      AS transaction_cost
  FROM sessions s CROSS JOIN prices p
  LEFT JOIN hosts h USING (session_id) LEFT JOIN viewing v USING (session_id)
  LEFT JOIN g USING (session_id) LEFT JOIN o USING (session_id) LEFT JOIN r USING (session_id)
  LEFT JOIN session_infra i USING (session_id)
)
SELECT session_id, creator_ids, started_at, ended_at, live_minutes, viewer_minutes,
  money(gross_volume) AS gross_volume, money(creator_earnings) AS creator_earnings,
  money(platform_revenue) AS platform_revenue, money(infra_cost) AS infra_cost,
  money(platform_revenue) - money(transaction_cost) - money(infra_cost) AS contribution
FROM m ORDER BY started_at, session_id;
"""

CREATOR_WEEKLY = """
CREATE OR REPLACE TEMP TABLE creator_weekly AS
WITH live_hours AS (
  SELECT creator_id, hour, sum(us) AS us FROM presence_hours GROUP BY ALL HAVING sum(us) > 0),
live AS (
  SELECT creator_id, week_of(hour) AS week, sum(us) / 60e6 AS live_minutes,
         count(*) AS live_hours
  FROM live_hours GROUP BY ALL),
earning_hours AS (
  SELECT l.creator_id, week_of(l.hour) AS week, count(*) AS earning_hours
  FROM live_hours l
  WHERE EXISTS (SELECT 1 FROM earnings e WHERE e.earning_events > 0
                AND e.creator_id = l.creator_id AND e.hour = l.hour)
  GROUP BY ALL),
money AS (
  SELECT creator_id, week_of(hour) AS week, CAST(sum(earning_events) AS BIGINT)
         AS earning_events, sum(amount) AS earnings
  FROM earnings GROUP BY ALL),
session_money AS (
  SELECT creator_id, week_of(hour) AS week, session_id, sum(amount) AS amount
  FROM earnings WHERE session_id IS NOT NULL GROUP BY ALL),
top_session AS (
  SELECT creator_id, week, max(amount) AS top_amount FROM session_money GROUP BY ALL),
creator_sessions AS (
  SELECT p.creator_id, p.session_id, week_of(s.started_at) AS week,
         min(p.present_from) AS first_present,
         sum(micros(p.present_from, p.present_until)) AS us
  FROM presence p JOIN sessions s USING (session_id) GROUP BY ALL),
first_earning AS (
  SELECT creator_id, session_id, min(first_earning_at) AS first_at
  FROM earnings WHERE earning_events > 0 AND session_id IS NOT NULL GROUP BY ALL),
session_stats AS (
  SELECT cs.creator_id, cs.week, count(*) AS sessions,
         count(fe.first_at) AS sessions_with_earnings,
         median(micros(cs.first_present, fe.first_at) / 60e6) AS median_minutes_to_first_earning
  FROM creator_sessions cs LEFT JOIN first_earning fe USING (creator_id, session_id)
  GROUP BY ALL),
creator_session_cost AS (
  SELECT cs.creator_id, cs.week,
         si.infra_cost * cs.us // sum(cs.us) OVER (PARTITION BY cs.session_id) AS infra_cost
  FROM creator_sessions cs JOIN session_infra si USING (session_id)),
infra AS (SELECT creator_id, week, sum(infra_cost) AS infra_cost
          FROM creator_session_cost GROUP BY ALL),
keys AS (
  SELECT creator_id, week FROM live UNION SELECT creator_id, week FROM money
  UNION SELECT creator_id, week FROM session_stats)
SELECT k.week, k.creator_id,
  COALESCE(l.live_minutes, 0) AS live_minutes, COALESCE(l.live_hours, 0) AS live_hours,
  COALESCE(eh.earning_hours, 0) AS earning_hours,
  ratio(COALESCE(eh.earning_hours, 0), l.live_hours) AS earning_hour_ratio,
  COALESCE(ss.sessions, 0) AS sessions,
  COALESCE(ss.sessions_with_earnings, 0) AS sessions_with_earnings,
  ss.median_minutes_to_first_earning,
  COALESCE(m.earning_events, 0) AS earning_events,
  money(COALESCE(m.earnings, 0)) AS earnings,
  CASE WHEN m.earnings > 0 THEN ratio(t.top_amount, m.earnings) END AS top_session_share,
  money(COALESCE(i.infra_cost, 0)) AS infra_cost
FROM keys k
LEFT JOIN live l USING (creator_id, week) LEFT JOIN earning_hours eh USING (creator_id, week)
LEFT JOIN money m USING (creator_id, week) LEFT JOIN top_session t USING (creator_id, week)
LEFT JOIN session_stats ss USING (creator_id, week) LEFT JOIN infra i USING (creator_id, week)
ORDER BY k.week, k.creator_id;
"""

PLATFORM_WEEKLY = """
CREATE OR REPLACE TEMP TABLE platform_weekly AS
WITH active AS (
  SELECT week, creator_id, earning_events, earning_hour_ratio,
         CAST(earnings AS DOUBLE) AS earnings,
         row_number() OVER (PARTITION BY week ORDER BY earnings, creator_id) AS rank_up,
         row_number() OVER (PARTITION BY week ORDER BY earnings DESC, creator_id) AS rank_down,
         count(*) OVER (PARTITION BY week) AS n
  FROM creator_weekly WHERE live_hours > 0)
SELECT week,
  count(*) AS active_creators,
  count(*) FILTER (WHERE earning_events > 0) AS earning_creators,
  ratio(count(*) FILTER (WHERE earning_events > 0), count(*)) AS earning_creator_share,
  median(earning_hour_ratio) AS median_earning_hour_ratio,
  ratio(sum((2 * rank_up - n - 1) * earnings), any_value(n) * sum(earnings)) AS earnings_gini,
  ratio(sum(earnings) FILTER (WHERE rank_down <= ceil(n * 0.01)), sum(earnings))
    AS top1pct_earnings_share
FROM active GROUP BY week ORDER BY week;
"""

STEPS = (
    MACROS,
    LIVE_TIME,
    USAGE_COST,
    MONEY,
    PLATFORM_DAILY,
    SESSION_ECONOMICS,
    CREATOR_WEEKLY,
    PLATFORM_WEEKLY,
)
MARTS = ("platform_daily", "creator_weekly", "platform_weekly", "session_economics")
