/* The wait before retrying a refused upstream connect: the configured base,
 * doubled for each further retry, capped so that no retry count the config
 * accepts (upstream.connect_retries up to 100) overflows or waits absurdly
 * long. Pure. */
#ifndef EDGEPROXY_BACKOFF_H
#define EDGEPROXY_BACKOFF_H

/* The longest single wait: one minute, the largest base the config accepts
 * (upstream.retry_backoff_ms 0..60000). */
#define BACKOFF_MAX_MS 60000

/* Milliseconds to wait before retry number `attempt` (1 = the first retry):
 * base_ms << (attempt - 1), at most BACKOFF_MAX_MS. 0 when base_ms <= 0. */
int backoff_ms(int base_ms, int attempt);

#endif
