#include "backoff.h"

int backoff_ms(int base_ms, int attempt)
{
    if (base_ms <= 0)
        return 0;
    /* Doubling stops at the cap: ms < BACKOFF_MAX_MS before each step, so
     * 2 * ms never overflows and the loop runs at most 16 times. */
    int ms = base_ms;
    for (int i = 1; i < attempt && ms < BACKOFF_MAX_MS; i++)
        ms *= 2;
    return ms < BACKOFF_MAX_MS ? ms : BACKOFF_MAX_MS;
}

int backoff_between_ms(int lo_ms, int hi_ms, uint32_t rnd)
{
    if (hi_ms <= lo_ms)
        return lo_ms;
    /* hi - lo + 1 <= BACKOFF_MAX_MS-ish in practice; in 64 bits whatever
     * the ints are. */
    uint64_t span = (uint64_t)((int64_t)hi_ms - lo_ms) + 1;
    return (int)((int64_t)lo_ms + (int64_t)(rnd % span));
}

int backoff_jitter_ms(int base_ms, int attempt, int cap_ms, uint32_t rnd)
{
    int ms = backoff_ms(base_ms, attempt);
    if (cap_ms > 0 && ms > cap_ms)
        ms = cap_ms;
    return backoff_between_ms(ms - ms / 2, ms, rnd);
}
