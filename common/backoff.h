/* Waits before retrying: the refused upstream connect (the configured base,
 * doubled for each further retry, capped so that no retry count the config
 * accepts, upstream.connect_retries up to 100, overflows or waits absurdly
 * long), and the Redis and Sentinel reconnects, which add jitter so that the
 * workers and instances that lost a server together do not all knock on the
 * next one in the same millisecond. Pure: the randomness is passed in. */
#ifndef EDGEPROXY_BACKOFF_H
#define EDGEPROXY_BACKOFF_H

#include <stdint.h>

/* The longest single wait: one minute, the largest base the config accepts
 * (upstream.retry_backoff_ms 0..60000). */
#define BACKOFF_MAX_MS 60000

/* Milliseconds to wait before retry number `attempt` (1 = the first retry):
 * base_ms << (attempt - 1), at most BACKOFF_MAX_MS. 0 when base_ms <= 0. */
int backoff_ms(int base_ms, int attempt);

/* backoff_ms capped at cap_ms (when cap_ms > 0), then drawn from `rnd` (any
 * 32 random bits) between half of it and all of it ("equal jitter"): never
 * less than half the plain wait, so a retry storm spreads out without any
 * client retrying at once. 0 when base_ms <= 0. */
int backoff_jitter_ms(int base_ms, int attempt, int cap_ms, uint32_t rnd);

/* A wait between lo_ms and hi_ms inclusive, drawn from rnd (lo_ms when
 * hi_ms <= lo_ms). */
int backoff_between_ms(int lo_ms, int hi_ms, uint32_t rnd);

#endif
