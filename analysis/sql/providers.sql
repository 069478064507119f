-- Per-provider port-25 blocking, the same inference as `analysis report`, in DuckDB SQL.
-- Set the inputs first, e.g.:
--   SET VARIABLE data = 'crawls/**/*.parquet';            -- the crawler's --out, hive layout
--   SET VARIABLE orgs = '20261001.as-org2info.jsonl.gz';   -- CAIDA AS2Org JSONL
-- then run this file:  duckdb -c ".read providers.sql"   (or paste it after the SETs).
-- Location (which AS an ICMP responder belongs to) needs longest-prefix matching over routing
-- data and is left to the binary; everything else (n, filtered, rate, interval, verdict,
-- mechanism) matches providers.csv. Two rules beyond counting, as in the binary:
-- * RSTs forged on the path come from one injector a fixed number of hops closer than the
--   hosts; RST-injected hosts at another hop difference than the provider's usual one (ties:
--   the larger) are ambiguous (ECMP, load balancers) and set apart, not counted.
-- * Routers rate-limit ICMP errors, so an ICMP filter answers some probes and leaves the rest
--   silent: silence plus one ICMP kind (>= 3 hosts, from routers answering for >= 2 hosts
--   each), nothing else, and fewer than half the filtered hosts beside reachable ones in their
--   /24 (IPv6 /64: those are host firewalls), is that ICMP filter.
-- Hosts are credited to the prefix's first origin AS (the `asn` column); the binary also
-- credits the other origins of a multi-origin prefix, which matters across organizations only.
-- One vantage at a time: the latest crawl, or the latest of `SET VARIABLE vantage = 'NAME';`.
-- Scan bans are the binary's alone (the test needs every host's answer times): a provider it
-- calls `vantage-banned` has its plain counts here.
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
    -- the host's own TTL: its control-port replies and closed-random-port RSTs (else a mail SYN-ACK)
    coalesce(mode(reply_ttl) FILTER (WHERE (port_role = 'control' AND reply IN ('synack', 'rst'))
                                        OR (port_role = 'random' AND reply = 'rst')),
             min(reply_ttl) FILTER (WHERE port IN (25, 465, 587) AND port_role IN ('target', 'mail') AND reply = 'synack')) AS host_ttl,
    bool_or(port_role = 'control' AND reply IN ('synack', 'rst')) AS ctl,
    bool_or(port_role = 'random' AND reply = 'rst') AS rnd_rst,
    bool_or(port_role = 'random' AND reply = 'synack') AS all_ports,
    bool_or(port IN (25, 465, 587) AND port_role IN ('target', 'mail') AND reply = 'synack') AS mail_synack,
    bool_or(reply = 'icmp' AND ((ip_version = 4 AND icmp_type = 3 AND icmp_code IN (0, 1, 6, 7))
                             OR (ip_version = 6 AND icmp_type = 1 AND icmp_code IN (0, 3)))) AS unreach,
    any_value(reply) FILTER (WHERE port = 25 AND port_role = 'target') AS r,
    any_value(reply_ttl) FILTER (WHERE port = 25 AND port_role = 'target') AS ttl,
    any_value(icmp_type) FILTER (WHERE port = 25 AND port_role = 'target') AS ity,
    any_value(icmp_code) FILTER (WHERE port = 25 AND port_role = 'target') AS ico,
    any_value(icmp_responder) FILTER (WHERE port = 25 AND port_role = 'target') AS responder
  FROM obs GROUP BY ip
),
state AS (
  SELECT *,
    CASE WHEN r = 'synack' THEN 'open'
         WHEN r = 'rst' AND host_ttl IS NULL THEN 'rst-unverified'
         WHEN r = 'rst' AND ttl <> host_ttl THEN 'rst-injected'
         WHEN r = 'rst' THEN 'closed'
         WHEN r = 'icmp' AND ((v = 4 AND ity = 3 AND ico IN (9, 10, 13)) OR (v = 6 AND ity = 1 AND ico IN (1, 5, 6))) THEN 'icmp-prohibited'
         WHEN r = 'icmp' AND ((v = 4 AND ity = 3 AND ico = 3) OR (v = 6 AND ity = 1 AND ico = 4)) THEN 'icmp-port-unreachable'
         WHEN r = 'icmp' THEN 'icmp-other'
         ELSE 'silent' END AS s
  FROM host WHERE r IS NOT NULL
),
cls0 AS (
  SELECT *,
    CASE WHEN all_ports THEN 'all-ports-responder'
         WHEN NOT (ctl OR rnd_rst OR mail_synack) OR (unreach AND NOT ctl) THEN 'dead'
         WHEN s IN ('open', 'closed') OR (ctl AND rnd_rst) THEN NULL
         ELSE 'uninformative' END AS excluded,
    s IN ('rst-injected', 'icmp-prohibited', 'icmp-port-unreachable', 'silent') AS filt,
    -- hops travelled: the TTL's distance below its likely initial value (32, 64, 128, 255), so
    -- an injector's RSTs give one difference whatever the hosts' operating systems
    (CASE WHEN host_ttl <= 32 THEN 32 WHEN host_ttl <= 64 THEN 64 WHEN host_ttl <= 128 THEN 128 ELSE 255 END - CAST(host_ttl AS INTEGER))
      - (CASE WHEN ttl <= 32 THEN 32 WHEN ttl <= 64 THEN 64 WHEN ttl <= 128 THEN 128 ELSE 255 END - CAST(ttl AS INTEGER)) AS hops,
    -- the host's /24 (IPv6: /64, from the address's text with `::` expanded)
    CASE WHEN v = 4 THEN regexp_replace(ip, '\.[0-9]+$', '')
         WHEN ip NOT LIKE '%::%' THEN array_to_string(string_split(ip, ':')[1:4], ':')
         ELSE array_to_string(list_concat(list_concat(g1, repeat(['0'], 8 - len(g1) - len(g2))), g2)[1:4], ':') END AS net
  FROM (SELECT *,
          CASE WHEN split_part(ip, '::', 1) = '' THEN []::VARCHAR[] ELSE string_split(split_part(ip, '::', 1), ':') END AS g1,
          CASE WHEN split_part(ip, '::', 2) = '' THEN []::VARCHAR[] ELSE string_split(split_part(ip, '::', 2), ':') END AS g2
        FROM state)
),
orgs AS (SELECT * FROM read_json(getvariable('orgs'), format = 'newline_delimited', ignore_errors = true)),
asorg AS (SELECT CAST(asn AS UINTEGER) AS asn, organizationId AS org_id FROM orgs WHERE type = 'ASN'),
orgname AS (SELECT organizationId AS org_id, name FROM orgs WHERE type = 'Organization'),
grouped AS (
  SELECT c.*, coalesce(a.org_id, 'AS' || c.asn) AS org_id, CASE c.v WHEN 4 THEN 'ipv4' ELSE 'ipv6' END AS family
  FROM cls0 c LEFT JOIN asorg a USING (asn)
),
-- the provider's usual hop difference of injected RSTs (most hosts; ties: the larger)
usual AS (
  SELECT org_id, family, arg_max(hops, (m, hops)) AS top_hops FROM (
    SELECT org_id, family, hops, count(*) AS m FROM grouped WHERE excluded IS NULL AND s = 'rst-injected' GROUP BY ALL
  ) GROUP BY ALL
),
cls AS (
  SELECT g.* REPLACE (CASE WHEN g.excluded IS NULL AND g.s = 'rst-injected' AND g.hops <> u.top_hops THEN 'rst-ambiguous' ELSE g.excluded END AS excluded)
  FROM grouped g LEFT JOIN usual u USING (org_id, family)
),
per AS (
  SELECT org_id, family,
    count(*) AS hosts,
    count(*) FILTER (WHERE excluded IS NULL) AS n,
    count(*) FILTER (WHERE excluded IS NULL AND filt) AS k,
    count(*) FILTER (WHERE excluded = 'dead') AS excluded_dead,
    count(*) FILTER (WHERE excluded = 'all-ports-responder') AS excluded_all_ports,
    count(*) FILTER (WHERE excluded = 'uninformative') AS excluded_uninformative,
    count(*) FILTER (WHERE excluded = 'rst-ambiguous') AS excluded_rst_ambiguous,
    count(*) FILTER (WHERE excluded IS NULL AND s = 'silent') AS n_silent,
    count(*) FILTER (WHERE excluded IS NULL AND s = 'icmp-prohibited') AS n_prohibited,
    count(*) FILTER (WHERE excluded IS NULL AND s = 'icmp-port-unreachable') AS n_unreachable,
  FROM cls
  GROUP BY ALL
),
-- filtered hosts beside reachable ones in their /24 (before the RST ambiguity, as the binary)
beside AS (
  SELECT org_id, family, count(*) FILTER (WHERE filt AND reach) AS n_beside FROM (
    SELECT *, bool_or(s IN ('open', 'closed')) OVER (PARTITION BY org_id, family, net) AS reach
    FROM grouped WHERE excluded IS NULL
  ) GROUP BY ALL
),
-- ICMP errors from responders that answered for one filtered host only (host firewalls)
lone AS (
  SELECT org_id, family, count(*) FILTER (WHERE m = 1) AS lone_icmp FROM (
    SELECT org_id, family, responder, count(*) AS m FROM cls
    WHERE excluded IS NULL AND filt AND responder IS NOT NULL GROUP BY ALL
  ) GROUP BY ALL
),
-- mechanism: the most common filtered state, named when it covers >= 80 % of filtered hosts
mech AS (
  SELECT org_id, family, arg_max(s, m) AS top_state, max(m) AS top_n FROM (
    SELECT org_id, family, s, count(*) AS m FROM cls WHERE excluded IS NULL AND filt GROUP BY ALL
  ) GROUP BY ALL
),
ci AS (
  SELECT *, k / n AS rate, 1.959963984540054 AS z FROM per WHERE n > 0
  UNION ALL BY NAME SELECT *, NULL AS rate, 1.959963984540054 AS z FROM per WHERE n = 0
),
wilson AS (
  SELECT *,
    CASE WHEN n = 0 THEN NULL ELSE greatest(0, ((rate + z*z/(2*n)) - z*sqrt(rate*(1-rate)/n + z*z/(4*n*n))) / (1 + z*z/n)) END AS ci_low,
    CASE WHEN n = 0 THEN NULL ELSE least(1, ((rate + z*z/(2*n)) + z*sqrt(rate*(1-rate)/n + z*z/(4*n*n))) / (1 + z*z/n)) END AS ci_high
  FROM ci
)
SELECT w.org_id, coalesce(o.name, w.org_id) AS provider, family, 25 AS port, hosts, n AS informative, k AS filtered,
  round(rate, 6) AS rate, round(ci_low, 6) AS ci_low, round(ci_high, 6) AS ci_high,
  CASE WHEN n < 30 THEN 'insufficient' WHEN ci_low >= 0.9 THEN 'blocks' WHEN ci_high <= 0.1 THEN 'open' ELSE 'mixed' END AS verdict,
  CASE WHEN k = 0 THEN ''
       WHEN coalesce(lone_icmp, 0) = 0 AND coalesce(n_beside, 0) < 0.5 * k AND n_prohibited >= 3 AND n_prohibited + n_silent = k AND n_prohibited < 0.8 * k THEN 'icmp-prohibited'
       WHEN coalesce(lone_icmp, 0) = 0 AND coalesce(n_beside, 0) < 0.5 * k AND n_unreachable >= 3 AND n_unreachable + n_silent = k AND n_unreachable < 0.8 * k THEN 'icmp-port-unreachable'
       WHEN top_n < 0.8 * k THEN 'mixed'
       WHEN top_state = 'silent' THEN 'silent-drop' ELSE top_state END AS mechanism,
  excluded_dead, excluded_all_ports, excluded_uninformative, excluded_rst_ambiguous
FROM wilson w LEFT JOIN orgname o USING (org_id) LEFT JOIN mech USING (org_id, family) LEFT JOIN lone USING (org_id, family)
  LEFT JOIN beside USING (org_id, family)
ORDER BY provider, family;
