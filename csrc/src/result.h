/*
 * result.h - internal helpers around result codes and error texts.
 */
#ifndef CCL_RESULT_H
#define CCL_RESULT_H

#include <stddef.h>

/* The buffer a create call writes its error text into: the caller's
 * (emptied), or `scratch` (2 bytes) when the caller gave none, so the
 * callee can always write. */
char *ccl__err_out(char *err, size_t *errlen, char scratch[2]);

#endif
