-- Per-provider port-25 blocking, the same inference as `analysis report`, in DuckDB SQL.
-- Set the inputs first, e.g.:
--   SET VARIABLE data = 'crawls/**/*.parquet';            -- the crawler's --out, hive layout
--   SET VARIABLE orgs = '20261001.as-org2info.jsonl.gz';   -- CAIDA AS2Org JSONL
-- then run this file:  duckdb -c ".read providers.sql"   (or paste it after the SETs).
-- Location (which AS an ICMP responder belongs to) needs longest-prefix matching over routing
-- data and is left to the binary; everything else (n, filtered, rate, interval, verdict,
-- mechanism) matches providers.csv. Two rules beyond counting, as in the binary:
-- * A RST on 25 with a TTL none of the host's own flows came with is only a candidate forged
--   RST (ECMP gives one host's flows different paths); it counts as injected when it came
--   from a distance none of the provider's hosts answer from themselves, and the most common
--   such distance (ties: the nearer); other candidates are ambiguous and set apart.
-- * Every ICMP destination-unreachable (any code) on a host that answers on other ports is a
--   filter; the code names the mechanism (prohibited, port-, host-, net-unreachable).
-- * Routers rate-limit ICMP errors, so an ICMP filter answers some probes and leaves the rest
--   silent: silence plus one ICMP kind (>= 3 hosts, from routers answering for >= 2 hosts
--   each), nothing else, and fewer than half the filtered hosts beside reachable ones in their
--   /24 (IPv6 /64: those are host firewalls), is that ICMP filter.
-- Withheld verdicts (vantage-banned, vantage-outage, vantage-filtered) are the binary's alone:
-- those rows have their plain counts here.
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
    -- the TTLs of the host's own replies, one per flow: control ports, closed random ports' RSTs,
    -- mail-port SYN-ACKs (ECMP over paths of unequal length gives one host several)
    list(reply_ttl) FILTER (WHERE (port_role = 'control' AND reply IN ('synack', 'rst'))
                              OR (port_role = 'random' AND reply = 'rst')
                              OR (port IN (25, 465, 587) AND port_role IN ('target', 'mail') AND reply = 'synack')) AS refs,
    bool_or(port_role = 'control' AND reply IN ('synack', 'rst')) AS ctl,
    bool_or(port_role = 'random' AND reply = 'rst') AS rnd_rst,
    bool_or(port_role = 'random' AND reply = 'synack') AS all_ports,
    bool_or(port IN (25, 465, 587) AND port_role IN ('target', 'mail') AND reply = 'synack') AS mail_synack,
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
         -- a RST with a TTL one of the host's own flows came with is the host's own
         WHEN r = 'rst' AND list_contains(refs, ttl) THEN 'closed'
         -- with another TTL: a candidate forged RST (the provider's other hosts decide, below)
         WHEN r = 'rst' AND len(refs) >= 2 THEN 'rst-injected'
         WHEN r = 'rst' THEN 'rst-unverified'
         WHEN r = 'icmp' AND NOT ((v = 4 AND ity = 3) OR (v = 6 AND ity = 1)) THEN 'icmp-other'
         WHEN r = 'icmp' AND ((v = 4 AND ico IN (9, 10, 13)) OR (v = 6 AND ico IN (1, 5, 6))) THEN 'icmp-prohibited'
         WHEN r = 'icmp' AND ((v = 4 AND ico = 3) OR (v = 6 AND ico = 4)) THEN 'icmp-port-unreachable'
         WHEN r = 'icmp' AND ((v = 4 AND ico IN (1, 7, 12)) OR (v = 6 AND ico = 3)) THEN 'icmp-host-unreachable'
         WHEN r = 'icmp' AND ((v = 4 AND ico IN (0, 6, 11)) OR (v = 6 AND ico = 0)) THEN 'icmp-net-unreachable'
         WHEN r = 'icmp' THEN 'icmp-unreachable'
         ELSE 'silent' END AS s
  FROM host WHERE r IS NOT NULL
),
cls0 AS (
  SELECT *,
    CASE WHEN all_ports THEN 'all-ports-responder'
         WHEN NOT (ctl OR rnd_rst OR mail_synack) THEN 'dead'
         WHEN s IN ('icmp-other', 'rst-unverified') THEN 'uninformative'
         WHEN s IN ('open', 'closed') OR (ctl AND rnd_rst) THEN NULL
         ELSE 'uninformative' END AS excluded,
    -- every destination-unreachable is a filter on a host that answers on other ports
    s IN ('rst-injected', 'icmp-prohibited', 'icmp-port-unreachable', 'icmp-host-unreachable', 'icmp-net-unreachable', 'icmp-unreachable', 'silent') AS filt,
    -- hops travelled: the TTL's distance below its likely initial value (32, 64, 128, 255), so
    -- an injector's RSTs give one distance whatever the hosts' operating systems
    CASE WHEN ttl <= 32 THEN 32 WHEN ttl <= 64 THEN 64 WHEN ttl <= 128 THEN 128 ELSE 255 END - CAST(ttl AS INTEGER) AS hops,
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
-- the distances the provider's informative hosts answer from themselves (one count per flow;
-- a distance of >= 2 % of the flows, and >= 2)
own AS (
  SELECT org_id, family, d FROM (
    SELECT org_id, family, d, count(*) AS m, sum(count(*)) OVER (PARTITION BY org_id, family) AS total FROM (
      SELECT org_id, family, CASE WHEN t <= 32 THEN 32 WHEN t <= 64 THEN 64 WHEN t <= 128 THEN 128 ELSE 255 END - CAST(t AS INTEGER) AS d
      FROM (SELECT org_id, family, unnest(refs) AS t FROM grouped WHERE excluded IS NULL)
    ) GROUP BY org_id, family, d
  ) WHERE m >= 2 AND m >= 0.02 * total
),
-- the injector's distance: the most common distance of candidate forged RSTs at which no host
-- answers itself (ties: the nearer); candidates elsewhere are ambiguous (ECMP, load balancers)
usual AS (
  SELECT org_id, family, arg_max(hops, (m, -hops)) AS top_hops FROM (
    SELECT g.org_id, g.family, g.hops, count(*) AS m FROM grouped g
    WHERE g.excluded IS NULL AND g.s = 'rst-injected'
      AND NOT EXISTS (SELECT 1 FROM own o WHERE o.org_id = g.org_id AND o.family = g.family AND o.d = g.hops)
    GROUP BY ALL
  ) GROUP BY ALL
),
cls AS (
  SELECT g.* REPLACE (CASE WHEN g.excluded IS NULL AND g.s = 'rst-injected' AND g.hops IS DISTINCT FROM u.top_hops THEN 'rst-ambiguous' ELSE g.excluded END AS excluded)
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
-- the most common kind of ICMP error among the filtered hosts
icmp AS (
  SELECT org_id, family, arg_max(s, m) AS icmp_state, max(m) AS icmp_n FROM (
    SELECT org_id, family, s, count(*) AS m FROM cls WHERE excluded IS NULL AND filt AND s LIKE 'icmp-%' GROUP BY ALL
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
       WHEN coalesce(lone_icmp, 0) = 0 AND coalesce(n_beside, 0) < 0.5 * k AND icmp_n >= 3 AND icmp_n + n_silent = k AND icmp_n < 0.8 * k THEN icmp_state
       WHEN top_n < 0.8 * k THEN 'mixed'
       WHEN top_state = 'silent' THEN 'silent-drop' ELSE top_state END AS mechanism,
  excluded_dead, excluded_all_ports, excluded_uninformative, excluded_rst_ambiguous
FROM wilson w LEFT JOIN orgname o USING (org_id) LEFT JOIN mech USING (org_id, family) LEFT JOIN lone USING (org_id, family)
  LEFT JOIN beside USING (org_id, family) LEFT JOIN icmp USING (org_id, family)
ORDER BY provider, family;
