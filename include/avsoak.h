/* avsoak.h: mark a program's iterations for `avsoak watch` (marker mode).
 *
 * Call AVSOAK_ITERATION(frames) once per unit of work (a frame, a segment, a file), at
 * the point where nothing is in flight that the next iteration frees: avsoak reads the
 * live heap right there. Under `avsoak watch` each call is one iteration of the soak;
 * without avsoak the symbol is weak and unresolved, and the call does nothing.
 * Usable from C and C++.
 */
#ifndef AVSOAK_H
#define AVSOAK_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Defined by libavsoak_preload.so; a null address when the program runs without it. */
void avsoak_iteration(uint64_t frames) __attribute__((weak));

#ifdef __cplusplus
}
#endif

/* One iteration ended, having handled `frames` frames. */
#define AVSOAK_ITERATION(frames)                                                          \
    do {                                                                                  \
        if (avsoak_iteration) avsoak_iteration((uint64_t)(frames));                       \
    } while (0)

#endif /* AVSOAK_H */
