/*
 * copy_nt.h - a copy whose destination bypasses the caches, for bytes that
 * are written now and read only if something goes wrong (the saved input
 * of an in-place op, op_input.c).
 */
#ifndef CCL_COPY_NT_H
#define CCL_COPY_NT_H

#include <stddef.h>

/* memcpy(dst, src, n) for buffers that do not overlap, with non-temporal
 * stores where the CPU has them (x86-64: always): the destination is not
 * read into the cache first and does not push out what is in it, so a
 * copy costs two passes over memory instead of three and the source stays
 * cached for whoever reads it next.  Ordered before later stores. */
void ccl__copy_nt(void *dst, const void *src, size_t n);
/* The same for n floats, which it also checks: returns the index of the
 * first NaN or infinity among them, or n if there is none (all n are
 * copied either way).  One read of src does both. */
size_t ccl__copy_nt_f32_check(float *dst, const float *src, size_t n);

#endif
