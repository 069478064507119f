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
    bool_or(reply = 'icmp' AND ((ip_version = 4 AND icmp_type = 3 AND icmp_code IN (0, 1, 6, 7))
                             OR (ip_version = 6 AND icmp_type = 1 AND icmp_code IN (0, 3)))) AS unreach,
    any_value(port) FILTER (WHERE port_role = 'reflect') AS rdport
  FROM obs GROUP BY ip
),
twin AS (
  SELECT o.ip, any_value(o.reply) AS twin_reply, any_value(o.reply_ttl) AS twin_ttl
  FROM obs o JOIN host h ON o.ip = h.ip AND o.port = h.rdport
  WHERE o.port_role IN ('random', 'control') GROUP BY o.ip
),
neutral AS (
  SELECT ip, any_value(reply) AS n_reply FROM obs
  WHERE port_role = 'reflect' AND src_port NOT IN (25, 465, 587) GROUP BY ip
),
cls AS (
  SELECT r.ip, r.src_port AS port, h.v, h.asn,
    CASE WHEN h.all_ports THEN 'all-ports-responder'
         WHEN NOT (h.ctl OR h.rnd_rst OR h.mail_synack) OR (h.unreach AND NOT h.ctl) THEN 'dead'
         WHEN t.twin_reply IS NULL OR t.twin_reply NOT IN ('synack', 'rst') THEN 'uninformative'
         WHEN n.n_reply IS NOT NULL AND n.n_reply NOT IN ('synack', 'rst') THEN 'source-port-filtered'
         ELSE NULL END AS excluded,
    CASE WHEN r.reply = 'rst' AND t.twin_reply = 'rst' AND r.reply_ttl <> t.twin_ttl THEN 'rst-injected'
         WHEN r.reply IN ('synack', 'rst') THEN 'passes'
         WHEN r.reply = 'icmp' AND ((h.v = 4 AND r.icmp_type = 3 AND r.icmp_code IN (9, 10, 13)) OR (h.v = 6 AND r.icmp_type = 1 AND r.icmp_code IN (1, 5, 6))) THEN 'icmp-prohibited'
         WHEN r.reply = 'icmp' AND ((h.v = 4 AND r.icmp_type = 3 AND r.icmp_code = 3) OR (h.v = 6 AND r.icmp_type = 1 AND r.icmp_code = 4)) THEN 'icmp-port-unreachable'
         WHEN r.reply = 'icmp' THEN 'icmp-other'
         ELSE 'silent' END AS s
  FROM obs r JOIN host h USING (ip) LEFT JOIN twin t USING (ip) LEFT JOIN neutral n USING (ip)
  WHERE r.port_role = 'reflect' AND r.src_port IN (25, 465, 587)
),
orgs AS (SELECT * FROM read_json(getvariable('orgs'), format = 'newline_delimited', ignore_errors = true)),
asorg AS (SELECT CAST(asn AS UINTEGER) AS asn, organizationId AS org_id FROM orgs WHERE type = 'ASN'),
orgname AS (SELECT organizationId AS org_id, name FROM orgs WHERE type = 'Organization'),
labelled AS (
  SELECT coalesce(a.org_id, 'AS' || c.asn) AS org_id, CASE c.v WHEN 4 THEN 'ipv4' ELSE 'ipv6' END AS family, c.*,
    s IN ('rst-injected', 'icmp-prohibited', 'icmp-port-unreachable', 'silent') AS filt  -- icmp-other is informative, not filtering (as the binary)
  FROM cls c LEFT JOIN asorg a USING (asn)
),
per AS (
  SELECT org_id, family, port,
    count(*) AS hosts,
    count(*) FILTER (WHERE excluded IS NULL) AS n,
    count(*) FILTER (WHERE excluded IS NULL AND filt) AS k,
    count(*) FILTER (WHERE excluded = 'dead') AS excluded_dead,
    count(*) FILTER (WHERE excluded = 'all-ports-responder') AS excluded_all_ports,
    count(*) FILTER (WHERE excluded = 'uninformative') AS excluded_uninformative,
    count(*) FILTER (WHERE excluded = 'source-port-filtered') AS excluded_source_port
  FROM labelled GROUP BY ALL
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
  CASE WHEN k = 0 THEN '' WHEN top_n < 0.8 * k THEN 'mixed'
       WHEN top_state = 'silent' THEN 'silent-drop' ELSE top_state END AS mechanism,
  excluded_dead, excluded_all_ports, excluded_uninformative, excluded_source_port
FROM wilson w LEFT JOIN orgname o USING (org_id) LEFT JOIN mech USING (org_id, family, port)
ORDER BY provider, family, port;
