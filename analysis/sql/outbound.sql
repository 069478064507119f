-- Per-provider OUTBOUND filtering of the mail ports (25, 465, 587) seen from outside by
-- source-port reflection: the same inference as the `direction = outbound` rows of
-- providers.csv (`analysis report`). Set the inputs first, e.g.:
--   SET VARIABLE data = 'crawls/**/*.parquet';            -- the crawler's --out, hive layout
--   SET VARIABLE orgs = '20261001.as-org2info.jsonl.gz';   -- CAIDA AS2Org JSONL
-- then run this file:  duckdb -c ".read outbound.sql"
--
-- A reflection probe (port_role = 'reflect') is a SYN from our source port 25 (465, 587) to
-- the host's closed random port: the host's RST must leave its network towards that port.
-- Its twin is the probe to the same destination port from an ephemeral source port; the
-- neutral control is the reflection from a port no provider filters (src_port 2525).
-- Reflection sees stateless egress filters only (a lower bound).
-- One vantage at a time, as providers.sql: the latest crawl, or the latest of
-- `SET VARIABLE vantage = 'NAME';`.
WITH crawl AS (
  SELECT max_by(crawl_id, (crawl_date, crawl_id)) AS id
  FROM read_parquet(getvariable('data'), hive_partitioning = true, union_by_name = true)
  WHERE getvariable('vantage') IS NULL OR vantage = getvariable('vantage')
),
obs AS (
  SELECT * FROM read_parquet(getvariable('data'), hive_partitioning = true, union_by_name = true)
  -- `unsent`: the probe never left (a send error): missing data, not silence.
  WHERE reply <> 'unsent' AND crawl_id = (SELECT id FROM crawl)
),
host AS (
  SELECT ip,
    any_value(ip_version) AS v,
    any_value(asn) AS asn,
    bool_or(port_role = 'control' AND reply IN ('synack', 'rst')) AS ctl,
    bool_or(port_role = 'random' AND reply = 'rst') AS rnd_rst,
    bool_or(port_role = 'random' AND reply = 'synack') AS all_ports,
    bool_or(port IN (25, 465, 587) AND port_role IN ('target', 'mail') AND reply = 'synack') AS mail_synack,
    -- the TTLs of the host's own replies, one per flow (the twin's among them), as providers.sql
    list(reply_ttl) FILTER (WHERE (port_role = 'control' AND reply IN ('synack', 'rst'))
                              OR (port_role = 'random' AND reply = 'rst')
                              OR (port IN (25, 465, 587) AND port_role IN ('target', 'mail') AND reply = 'synack')) AS refs,
    any_value(port) FILTER (WHERE port_role = 'reflect') AS rdport
  FROM obs GROUP BY ip
),
twin AS (
  SELECT o.ip, any_value(o.reply) AS twin_reply
  FROM obs o JOIN host h ON o.ip = h.ip AND o.port = h.rdport
  WHERE o.port_role IN ('random', 'control') GROUP BY o.ip
),
neutral AS (
  SELECT ip, any_value(reply) AS n_reply FROM obs
  WHERE port_role = 'reflect' AND src_port NOT IN (25, 465, 587) GROUP BY ip
),
st AS (
  SELECT r.ip, r.src_port AS port, h.v, h.asn, h.refs, h.all_ports, h.ctl, h.rnd_rst, h.mail_synack, t.twin_reply, n.n_reply, r.reply_ttl,
    r.icmp_responder AS responder,
    CASE WHEN r.reply = 'synack' THEN 'passes'
         -- the reflected RST with a TTL one of the host's own flows came with is the host's own
         WHEN r.reply = 'rst' AND list_contains(h.refs, r.reply_ttl) THEN 'passes'
         WHEN r.reply = 'rst' AND len(h.refs) >= 2 THEN 'rst-injected'
         WHEN r.reply = 'rst' THEN 'rst-unverified'
         WHEN r.reply = 'icmp' AND NOT ((h.v = 4 AND r.icmp_type = 3) OR (h.v = 6 AND r.icmp_type = 1)) THEN 'icmp-other'
         WHEN r.reply = 'icmp' AND ((h.v = 4 AND r.icmp_code IN (9, 10, 13)) OR (h.v = 6 AND r.icmp_code IN (1, 5, 6))) THEN 'icmp-prohibited'
         WHEN r.reply = 'icmp' AND ((h.v = 4 AND r.icmp_code = 3) OR (h.v = 6 AND r.icmp_code = 4)) THEN 'icmp-port-unreachable'
         WHEN r.reply = 'icmp' AND ((h.v = 4 AND r.icmp_code IN (1, 7, 12)) OR (h.v = 6 AND r.icmp_code = 3)) THEN 'icmp-host-unreachable'
         WHEN r.reply = 'icmp' AND ((h.v = 4 AND r.icmp_code IN (0, 6, 11)) OR (h.v = 6 AND r.icmp_code = 0)) THEN 'icmp-net-unreachable'
         WHEN r.reply = 'icmp' THEN 'icmp-unreachable'
         ELSE 'silent' END AS s
  FROM obs r JOIN host h USING (ip) LEFT JOIN twin t USING (ip) LEFT JOIN neutral n USING (ip)
  WHERE r.port_role = 'reflect' AND r.src_port IN (25, 465, 587)
),
cls AS (
  SELECT *,
    CASE WHEN all_ports THEN 'all-ports-responder'
         WHEN NOT (ctl OR rnd_rst OR mail_synack) THEN 'dead'
         WHEN twin_reply IS NULL OR twin_reply NOT IN ('synack', 'rst') THEN 'uninformative'
         WHEN n_reply IS NOT NULL AND n_reply NOT IN ('synack', 'rst') THEN 'source-port-filtered'
         WHEN s IN ('rst-unverified', 'icmp-other') THEN 'uninformative'
         ELSE NULL END AS excluded,
    CASE WHEN reply_ttl <= 32 THEN 32 WHEN reply_ttl <= 64 THEN 64 WHEN reply_ttl <= 128 THEN 128 ELSE 255 END - CAST(reply_ttl AS INTEGER) AS hops,
    -- the host's /24 (IPv6: /64, from the address's text with `::` expanded)
    CASE WHEN v = 4 THEN regexp_replace(ip, '\.[0-9]+$', '')
         WHEN ip NOT LIKE '%::%' THEN array_to_string(string_split(ip, ':')[1:4], ':')
         ELSE array_to_string(list_concat(list_concat(g1, repeat(['0'], 8 - len(g1) - len(g2))), g2)[1:4], ':') END AS net
  FROM (SELECT *,
          CASE WHEN split_part(ip, '::', 1) = '' THEN []::VARCHAR[] ELSE string_split(split_part(ip, '::', 1), ':') END AS g1,
          CASE WHEN split_part(ip, '::', 2) = '' THEN []::VARCHAR[] ELSE string_split(split_part(ip, '::', 2), ':') END AS g2
        FROM st)
),
orgs AS (SELECT * FROM read_json(getvariable('orgs'), format = 'newline_delimited', ignore_errors = true)),
asorg AS (SELECT CAST(asn AS UINTEGER) AS asn, organizationId AS org_id FROM orgs WHERE type = 'ASN'),
orgname AS (SELECT organizationId AS org_id, name FROM orgs WHERE type = 'Organization'),
labelled0 AS (
  SELECT coalesce(a.org_id, 'AS' || c.asn) AS org_id, CASE c.v WHEN 4 THEN 'ipv4' ELSE 'ipv6' END AS family, c.*,
    -- every destination-unreachable is a filter, as inbound
    s IN ('rst-injected', 'icmp-prohibited', 'icmp-port-unreachable', 'icmp-host-unreachable', 'icmp-net-unreachable', 'icmp-unreachable', 'silent') AS filt
  FROM cls c LEFT JOIN asorg a USING (asn)
),
-- candidate forged RSTs: injected only at a distance none of the provider's hosts answer from
-- themselves, and the most common such one (as providers.sql)
own AS (
  SELECT org_id, family, port, d FROM (
    SELECT org_id, family, port, d, count(*) AS m, sum(count(*)) OVER (PARTITION BY org_id, family, port) AS total FROM (
      SELECT org_id, family, port, CASE WHEN t <= 32 THEN 32 WHEN t <= 64 THEN 64 WHEN t <= 128 THEN 128 ELSE 255 END - CAST(t AS INTEGER) AS d
      FROM (SELECT org_id, family, port, unnest(refs) AS t FROM labelled0 WHERE excluded IS NULL)
    ) GROUP BY org_id, family, port, d
  ) WHERE m >= 2 AND m >= 0.02 * total
),
usual AS (
  SELECT org_id, family, port, arg_max(hops, (m, -hops)) AS top_hops FROM (
    SELECT g.org_id, g.family, g.port, g.hops, count(*) AS m FROM labelled0 g
    WHERE g.excluded IS NULL AND g.s = 'rst-injected'
      AND NOT EXISTS (SELECT 1 FROM own o WHERE o.org_id = g.org_id AND o.family = g.family AND o.port = g.port AND o.d = g.hops)
    GROUP BY ALL
  ) GROUP BY ALL
),
labelled AS (
  SELECT g.* REPLACE (CASE WHEN g.excluded IS NULL AND g.s = 'rst-injected' AND g.hops IS DISTINCT FROM u.top_hops THEN 'rst-ambiguous' ELSE g.excluded END AS excluded)
  FROM labelled0 g LEFT JOIN usual u USING (org_id, family, port)
),
per AS (
  SELECT org_id, family, port,
    count(*) AS hosts,
    count(*) FILTER (WHERE excluded IS NULL) AS n,
    count(*) FILTER (WHERE excluded IS NULL AND filt) AS k,
    count(*) FILTER (WHERE excluded = 'dead') AS excluded_dead,
    count(*) FILTER (WHERE excluded = 'all-ports-responder') AS excluded_all_ports,
    count(*) FILTER (WHERE excluded = 'uninformative') AS excluded_uninformative,
    count(*) FILTER (WHERE excluded = 'source-port-filtered') AS excluded_source_port,
    count(*) FILTER (WHERE excluded = 'rst-ambiguous') AS excluded_rst_ambiguous,
    count(*) FILTER (WHERE excluded IS NULL AND s = 'silent') AS n_silent
  FROM labelled GROUP BY ALL
),
-- routers rate-limit their ICMP errors: silence plus one ICMP kind (>= 3 hosts, from routers
-- answering for >= 2 hosts each), nothing else, and fewer than half the filtered hosts beside
-- reachable ones in their /24 (/64), is that ICMP filter — as providers.sql
beside AS (
  SELECT org_id, family, port, count(*) FILTER (WHERE filt AND reach) AS n_beside FROM (
    SELECT *, bool_or(s = 'passes') OVER (PARTITION BY org_id, family, port, net) AS reach
    FROM labelled0 WHERE excluded IS NULL
  ) GROUP BY ALL
),
lone AS (
  SELECT org_id, family, port, count(*) FILTER (WHERE m = 1) AS lone_icmp FROM (
    SELECT org_id, family, port, responder, count(*) AS m FROM labelled
    WHERE excluded IS NULL AND filt AND responder IS NOT NULL GROUP BY ALL
  ) GROUP BY ALL
),
icmp AS (
  SELECT org_id, family, port, arg_max(s, m) AS icmp_state, max(m) AS icmp_n FROM (
    SELECT org_id, family, port, s, count(*) AS m FROM labelled WHERE excluded IS NULL AND filt AND s LIKE 'icmp-%' GROUP BY ALL
  ) GROUP BY ALL
),
-- mechanism: the most common filtered state, named when it covers >= 80 % of filtered hosts
mech AS (
  SELECT org_id, family, port, arg_max(s, m) AS top_state, max(m) AS top_n FROM (
    SELECT org_id, family, port, s, count(*) AS m FROM labelled WHERE excluded IS NULL AND filt GROUP BY ALL
  ) GROUP BY ALL
),
wilson AS (
  SELECT *,
    CASE WHEN n = 0 THEN NULL ELSE k / n END AS rate,
    CASE WHEN n = 0 THEN NULL ELSE greatest(0, ((k / n + 1.959963984540054^2 / (2 * n)) - 1.959963984540054 * sqrt(k / n * (1 - k / n) / n + 1.959963984540054^2 / (4 * n * n))) / (1 + 1.959963984540054^2 / n)) END AS ci_low,
    CASE WHEN n = 0 THEN NULL ELSE least(1, ((k / n + 1.959963984540054^2 / (2 * n)) + 1.959963984540054 * sqrt(k / n * (1 - k / n) / n + 1.959963984540054^2 / (4 * n * n))) / (1 + 1.959963984540054^2 / n)) END AS ci_high
  FROM per
)
SELECT w.org_id, coalesce(o.name, w.org_id) AS provider, 'outbound' AS direction, family, port, hosts, n AS informative, k AS filtered,
  round(rate, 6) AS rate, round(ci_low, 6) AS ci_low, round(ci_high, 6) AS ci_high,
  CASE WHEN n < 30 THEN 'insufficient' WHEN ci_low >= 0.9 THEN 'blocks' WHEN ci_high <= 0.1 THEN 'open' ELSE 'mixed' END AS verdict,
  CASE WHEN k = 0 THEN ''
       WHEN coalesce(lone_icmp, 0) = 0 AND coalesce(n_beside, 0) < 0.5 * k AND icmp_n >= 3 AND icmp_n + n_silent = k AND icmp_n < 0.8 * k THEN icmp_state
       WHEN top_n < 0.8 * k THEN 'mixed'
       WHEN top_state = 'silent' THEN 'silent-drop' ELSE top_state END AS mechanism,
  excluded_dead, excluded_all_ports, excluded_uninformative, excluded_source_port, excluded_rst_ambiguous
FROM wilson w LEFT JOIN orgname o USING (org_id) LEFT JOIN mech USING (org_id, family, port)
  LEFT JOIN beside USING (org_id, family, port) LEFT JOIN lone USING (org_id, family, port) LEFT JOIN icmp USING (org_id, family, port)
ORDER BY provider, family, port;
