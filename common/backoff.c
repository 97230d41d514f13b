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
