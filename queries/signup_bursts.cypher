// Purpose: signup bursts by subnet: for each signup subnet, the window of window_hours that
//   holds the most signups, listed when it holds at least min_accounts. A university class
//   or a company onboarding also bursts: read the result beside the clusters and reasons.
//   Cost is quadratic in the signups of one subnet (fine below ~10k per subnet).
// Param window_hours (int, default 24): the length of the window.
// Param min_accounts (int, default 5): the fewest signups in a window to report it.
// Param limit (int, default 50): the most subnets returned.
MATCH (s:Subnet)<-[:SIGNED_UP_FROM_SUBNET]-(a:Account)
WITH s, a
ORDER BY a.created_at
WITH s, collect(a.created_at) AS times
WHERE size(times) >= $min_accounts
UNWIND range(0, size(times) - 1) AS i
WITH s, times, times[i] AS start
WITH s, times, start,
     size([t IN times WHERE start <= t < start + duration({hours: $window_hours})]) AS n
ORDER BY n DESC, start
WITH s, size(times) AS subnet_signups, collect({start: start, n: n})[0] AS best
WHERE best.n >= $min_accounts
RETURN s.value AS subnet,
       best.n AS signups_in_window,
       best.start AS window_start,
       best.start + duration({hours: $window_hours}) AS window_end,
       subnet_signups
ORDER BY signups_in_window DESC, subnet
LIMIT toInteger($limit)
